package postgres

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestRedactConninfo(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
	}{
		{"host=db user=u password=s3cret dbname=x", "host=db user=u password=******** dbname=x"},
		{"password=s3cret", "password=********"},
		{"host=db password = 's3 cr\\'et' port=5", "host=db password = ******** port=5"},
		{"host=db PASSWORD='unterminated secret", "host=db PASSWORD=********"},
		{"sslpassword=k3y host=h", "sslpassword=******** host=h"},
		{"postgres://u:s3cret@db:5432/x?sslmode=disable", "postgres://u:********@db:5432/x?sslmode=disable"},
		{"postgresql://u:s3c@ret@db/x", "postgresql://u:********@db/x"},
		{"postgres://u@db/x?password=s3cret&sslmode=require", "postgres://u@db/x?password=********&sslmode=require"},
		{"postgres://db/x", "postgres://db/x"},
		{"host=db user=u", "host=db user=u"},
		{"cannot parse `host=db password=s3cret`: bad", "cannot parse `host=db password=********`: bad"},
		{`parse conninfo "user=u password=s3cret": x`, `parse conninfo "user=u password=********": x`},
		{"userpassword=notasecretkey", "userpassword=notasecretkey"},
	}
	for _, tt := range tests {
		if got := RedactConninfo(tt.in); got != tt.want {
			t.Errorf("RedactConninfo(%q)\n got %q\nwant %q", tt.in, got, tt.want)
		}
	}
}

// FuzzRedactConninfo: a password made of ordinary characters never survives
// redaction, whatever surrounds it.
func FuzzRedactConninfo(f *testing.F) {
	f.Add("host=db user=u", "Xyzzy123", false)
	f.Add("host='a b' dbname=x", "pw_with_underscore", true)
	f.Add("", "abcd", false)
	f.Fuzz(func(t *testing.T, prefix, password string, uri bool) {
		if len(password) < 4 || strings.ContainsAny(password, " \t\n\r\v\f'\"\\`/?#@&:=()") || !isPrintable(password) {
			return
		}
		// The redacted output always contains at least the marker; make
		// sure the password cannot hide inside the prefix itself.
		if strings.Contains(prefix, password) || strings.Contains(redacted, password) {
			return
		}
		var s string
		if uri {
			s = "postgres://user:" + password + "@host/db?" + "password=" + password
		} else {
			s = prefix + " password=" + password + " port=5432"
		}
		if got := RedactConninfo(s); strings.Contains(got, password) {
			t.Errorf("RedactConninfo(%q) = %q still contains the password", s, got)
		}
	})
}

func isPrintable(s string) bool {
	for _, r := range s {
		if r < 0x21 || r > 0x7e {
			return false
		}
	}
	return true
}

func TestRedactErrorKeepsChain(t *testing.T) {
	t.Parallel()
	base := errors.New("boom password=hunter22")
	err := redactErr(base, "hunter22")
	if strings.Contains(err.Error(), "hunter22") {
		t.Errorf("error text leaks password: %v", err)
	}
	if !errors.Is(err, base) {
		t.Error("errors.Is lost the wrapped error")
	}
	// A passfile password appears only literally in text.
	err = redactErr(errors.New("weird message with longpassw0rd inside"), "longpassw0rd")
	if strings.Contains(err.Error(), "longpassw0rd") {
		t.Errorf("literal password leaked: %v", err)
	}
	if redactErr(nil, "x") != nil {
		t.Error("redactErr(nil) != nil")
	}
}

func TestParseServerVersion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want int
		err  bool
	}{
		{"15.18 (Debian 15.18-0+deb12u1)", 150018, false},
		{"15.2", 150002, false},
		{"16beta1", 160000, false},
		{"17devel", 170000, false},
		{"10.23", 100023, false},
		{"9.6.24", 90624, false},
		{"9.6", 90600, false},
		{"", 0, true},
		{"abc", 0, true},
	}
	for _, tt := range tests {
		got, err := parseServerVersion(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("parseServerVersion(%q) = %d, %v; want %d, err=%v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestMajorVersion(t *testing.T) {
	t.Parallel()
	for v, want := range map[int]string{150018: "15", 100000: "10", 90624: "9.6", 0: ""} {
		if got := majorVersion(v); got != want {
			t.Errorf("majorVersion(%d) = %q, want %q", v, got, want)
		}
	}
}

func TestUnits(t *testing.T) {
	t.Parallel()
	for unit, want := range map[string]uint64{"B": 1, "": 1, "kB": 1024, "8kB": 8192, "MB": 1 << 20, "16MB": 16 << 20, "GB": 1 << 30} {
		if got := unitBytes(unit); got != want {
			t.Errorf("unitBytes(%q) = %d, want %d", unit, got, want)
		}
	}
	for unit, want := range map[string]time.Duration{"s": time.Second, "ms": time.Millisecond, "min": time.Minute, "": time.Second} {
		if got := unitDuration(unit); got != want {
			t.Errorf("unitDuration(%q) = %v, want %v", unit, got, want)
		}
	}
}

func TestIsArchiving(t *testing.T) {
	t.Parallel()
	t1 := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	t2 := t1.Add(time.Minute)
	tests := []struct {
		name string
		mode string
		a    ArchiverStats
		want bool
	}{
		{"off", "off", ArchiverStats{}, false},
		{"on, never failed", "on", ArchiverStats{}, true},
		{"always, never failed", "always", ArchiverStats{}, true},
		{"failure after success", "on", ArchiverStats{LastArchivedWAL: "000000010000000000000002", LastArchivedTime: &t1,
			LastFailedWAL: "000000010000000000000003", LastFailedTime: &t2}, false},
		{"success after failure", "on", ArchiverStats{LastArchivedWAL: "000000010000000000000003", LastArchivedTime: &t2,
			LastFailedWAL: "000000010000000000000003", LastFailedTime: &t1}, true},
		{"failed only", "on", ArchiverStats{LastFailedWAL: "000000010000000000000001", LastFailedTime: &t1}, false},
		{"old-timeline history failure ignored", "on", ArchiverStats{LastArchivedWAL: "000000030000000000000009", LastArchivedTime: &t1,
			LastFailedWAL: "00000002.history", LastFailedTime: &t2}, true},
		{"newer-timeline history failure counts", "on", ArchiverStats{LastArchivedWAL: "000000020000000000000009", LastArchivedTime: &t1,
			LastFailedWAL: "00000003.history", LastFailedTime: &t2}, false},
	}
	for _, tt := range tests {
		if got := isArchiving(tt.mode, tt.a); got != tt.want {
			t.Errorf("%s: isArchiving = %v, want %v", tt.name, got, tt.want)
		}
	}
}
