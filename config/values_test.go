package config

import (
	"errors"
	"testing"
	"time"
)

func TestParseBool(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want bool
		bad  bool
	}{
		{"true", true, false}, {"T", true, false}, {"yes", true, false}, {"1", true, false}, {"On", true, false},
		{"false", false, false}, {"f", false, false}, {"NO", false, false}, {"0", false, false}, {"off", false, false},
		{" on ", true, false},
		{"", false, true}, {"maybe", false, true}, {"2", false, true}, {"y", false, true},
	} {
		got, err := ParseBool(tc.in)
		if tc.bad {
			if !errors.Is(err, ErrInvalidValue) {
				t.Errorf("ParseBool(%q) err = %v, want ErrInvalidValue", tc.in, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseBool(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseDuration(t *testing.T) {
	t.Parallel()
	day := 24 * time.Hour
	for _, tc := range []struct {
		in   string
		want time.Duration
		bad  bool
	}{
		{"1 day", day, false},
		{"2 days", 2 * day, false},
		{"1 WEEK", 7 * day, false},
		{"2 weeks", 14 * day, false},
		{"3 hours", 3 * time.Hour, false},
		{"1 hour", time.Hour, false},
		{"1 month", 31 * day, false},
		{"2 Months", 62 * day, false},
		{"1day", day, false},
		{"30", 30 * time.Second, false},
		{"0", 0, false},
		{"30s", 30 * time.Second, false},
		{"1h30m", 90 * time.Minute, false},
		{"", 0, true},
		{"-5s", 0, true},
		{"1 fortnight", 0, true},
		{"day", 0, true},
		{"1.5 days", 0, true},
		{"99999999999999999999", 0, true},
		{"9999999999999 months", 0, true},
	} {
		got, err := ParseDuration(tc.in)
		if tc.bad {
			if !errors.Is(err, ErrInvalidValue) {
				t.Errorf("ParseDuration(%q) = %v, %v; want ErrInvalidValue", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		// formatDuration must read back.
		back, err := ParseDuration(formatDuration(got))
		if err != nil || back != got {
			t.Errorf("round trip %v -> %q -> %v, %v", got, formatDuration(got), back, err)
		}
	}
}

func TestParseSize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want int64
		bad  bool
	}{
		{"0", 0, false},
		{"1024", 1024, false},
		{"10k", 10_000, false},
		{"10Ki", 10 * 1024, false},
		{"1 Gi", 1 << 30, false},
		{"1Gi", 1 << 30, false},
		{"2 G", 2_000_000_000, false},
		{"3M", 3_000_000, false},
		{"3Mi", 3 << 20, false},
		{"1T", 1_000_000_000_000, false},
		{"1Ti", 1 << 40, false},
		{"1K", 0, true},
		{"1 GB", 0, true},
		{"-1", 0, true},
		{"1.5G", 0, true},
		{"", 0, true},
		{"9999999999Ti", 0, true},
	} {
		got, err := ParseSize(tc.in)
		if tc.bad {
			if !errors.Is(err, ErrInvalidValue) {
				t.Errorf("ParseSize(%q) = %v, %v; want ErrInvalidValue", tc.in, got, err)
			}
			continue
		}
		if err != nil || got.Bytes() != tc.want {
			t.Errorf("ParseSize(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseRetentionPolicy(t *testing.T) {
	t.Parallel()
	day := 24 * time.Hour
	for _, tc := range []struct {
		in     string
		canon  string
		window time.Duration
		bad    bool
	}{
		{"REDUNDANCY 2", "REDUNDANCY 2", 0, false},
		{"redundancy 1", "REDUNDANCY 1", 0, false},
		{"  Redundancy   10 ", "REDUNDANCY 10", 0, false},
		{"RECOVERY WINDOW OF 7 DAYS", "RECOVERY WINDOW OF 7 DAYS", 7 * day, false},
		{"recovery window of 1 day", "RECOVERY WINDOW OF 1 DAYS", day, false},
		{"RECOVERY WINDOW OF 2 WEEK", "RECOVERY WINDOW OF 2 WEEKS", 14 * day, false},
		{"Recovery Window Of 3 Months", "RECOVERY WINDOW OF 3 MONTHS", 93 * day, false},
		{"REDUNDANCY 0", "", 0, true},
		{"REDUNDANCY", "", 0, true},
		{"REDUNDANCY -1", "", 0, true},
		{"RECOVERY WINDOW OF 0 DAYS", "", 0, true},
		{"RECOVERY WINDOW 7 DAYS", "", 0, true},
		{"RECOVERY WINDOW OF 7 YEARS", "", 0, true},
		{"RECOVERY WINDOW OF 7 HOURS", "", 0, true},
		{"KEEP 3", "", 0, true},
		{"", "", 0, true},
	} {
		p, err := ParseRetentionPolicy(tc.in)
		if tc.bad {
			if !errors.Is(err, ErrInvalidValue) {
				t.Errorf("ParseRetentionPolicy(%q) = %v, %v; want ErrInvalidValue", tc.in, p, err)
			}
			continue
		}
		if err != nil || p.String() != tc.canon || p.Window() != tc.window || !p.IsSet() {
			t.Errorf("ParseRetentionPolicy(%q) = %q window %v, %v; want %q window %v", tc.in, p, p.Window(), err, tc.canon, tc.window)
		}
		again, err := ParseRetentionPolicy(p.String())
		if err != nil || again != p {
			t.Errorf("round trip %q -> %v, %v", p, again, err)
		}
	}
}

func TestEnums(t *testing.T) {
	t.Parallel()
	type tu interface{ UnmarshalText([]byte) error }
	for _, tc := range []struct {
		name    string
		v       tu
		in      string
		want    string
		wantErr error
	}{
		{"method", new(BackupMethod), "postgres", "postgres", nil},
		{"method upper", new(BackupMethod), "POSTGRES", "postgres", nil},
		{"method rsync", new(BackupMethod), "rsync", "", ErrUnsupported},
		{"method local-rsync", new(BackupMethod), "local-rsync", "", ErrUnsupported},
		{"method bogus", new(BackupMethod), "ftp", "", ErrInvalidValue},
		{"compression gzip", new(Compression), "GZIP", "gzip", nil},
		{"compression bzip2 parses", new(Compression), "bzip2", "bzip2", nil},
		{"compression pigz", new(Compression), "pigz", "", ErrUnsupported},
		{"compression xz", new(Compression), "xz", "", ErrUnsupported},
		{"compression bogus", new(Compression), "brotli", "", ErrInvalidValue},
		{"backup compression zstd", new(BackupCompression), "zstd", "zstd", nil},
		{"backup compression bzip2", new(BackupCompression), "bzip2", "", ErrInvalidValue},
		{"level named", new(CompressionLevel), "High", "high", nil},
		{"level number", new(CompressionLevel), "9", "9", nil},
		{"level bad", new(CompressionLevel), "max", "", ErrInvalidValue},
		{"reuse link", new(ReuseBackup), "link", "link", nil},
		{"reuse bad", new(ReuseBackup), "hardlink", "", ErrInvalidValue},
		{"slot auto", new(CreateSlot), "AUTO", "auto", nil},
		{"slot bad", new(CreateSlot), "yes", "", ErrInvalidValue},
		{"mode auto", new(RetentionPolicyMode), "auto", "auto", nil},
		{"mode bad", new(RetentionPolicyMode), "manual", "", ErrInvalidValue},
		{"wal main", new(WALRetentionPolicy), "MAIN", "main", nil},
		{"wal bad", new(WALRetentionPolicy), "simple", "", ErrInvalidValue},
		{"log debug", new(LogLevel), "debug", "DEBUG", nil},
		{"log warn", new(LogLevel), "warn", "WARNING", nil},
		{"log bad", new(LogLevel), "TRACE", "", ErrInvalidValue},
		{"format json", new(LogFormat), "JSON", "json", nil},
		{"format python", new(LogFormat), "%(asctime)s %(message)s", "", ErrInvalidValue},
		{"recovery", new(RecoveryOptions), "get-wal, delta-restore,get-wal", "get-wal,delta-restore", nil},
		{"recovery bad", new(RecoveryOptions), "get-wal,fast", "", ErrInvalidValue},
		{"size", new(Size), "1 Ki", "1024", nil},
	} {
		err := tc.v.UnmarshalText([]byte(tc.in))
		if tc.wantErr != nil {
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("%s: UnmarshalText(%q) err = %v, want %v", tc.name, tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: UnmarshalText(%q): %v", tc.name, tc.in, err)
			continue
		}
		var got string
		switch x := tc.v.(type) {
		case *RecoveryOptions:
			b, _ := x.MarshalText()
			got = string(b)
		case *Size:
			b, _ := x.MarshalText()
			got = string(b)
		default:
			got = stringOf(tc.v)
		}
		if got != tc.want {
			t.Errorf("%s: UnmarshalText(%q) = %q, want %q", tc.name, tc.in, got, tc.want)
		}
	}
}

func stringOf(v any) string {
	switch x := v.(type) {
	case *BackupMethod:
		return string(*x)
	case *Compression:
		return string(*x)
	case *BackupCompression:
		return string(*x)
	case *CompressionLevel:
		return string(*x)
	case *ReuseBackup:
		return string(*x)
	case *CreateSlot:
		return string(*x)
	case *RetentionPolicyMode:
		return string(*x)
	case *WALRetentionPolicy:
		return string(*x)
	case *LogLevel:
		return string(*x)
	case *LogFormat:
		return string(*x)
	}
	return "?"
}

func TestValidateCron(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"0 3 * * *", true},
		{"*/15 * * * *", true},
		{"0 0 3 * * MON-FRI", true},
		{"CRON_TZ=Europe/Rome 0 3 * * *", true},
		{"@daily", true},
		{"@every 6h", true},
		{"@every 1 day", false},
		{"@sometimes", false},
		{"0 3 * *", false},
		{"0 3 * * * * *", false},
		{"0 3 * * $", false},
		{"   ", false},
	} {
		err := validateCron("backup_schedule", tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("validateCron(%q) = %v, want ok=%v", tc.in, err, tc.ok)
		}
	}
}

func TestEditDistanceSuggestion(t *testing.T) {
	t.Parallel()
	err := unknownOption("retention_polcy", OptionNames())
	if !errors.Is(err, ErrUnknownOption) || err.Error() != `unknown option (did you mean "retention_policy"?)` {
		t.Fatalf("got %v", err)
	}
	if err := unknownOption("zzzzzz", OptionNames()); err.Error() != "unknown option" {
		t.Fatalf("got %v", err)
	}
	if err := unknownOption("ssh_command", OptionNames()); !errors.Is(err, ErrUnknownOption) || err.Error() == "unknown option" {
		t.Fatalf("got %v", err)
	}
}
