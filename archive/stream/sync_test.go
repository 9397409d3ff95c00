package stream

import "testing"

func TestStandbyListed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		setting string
		want    bool
		ok      bool
	}{
		{"", false, true},
		{"*", true, true},
		{"barman_receive_wal", true, true},
		{"Barman_Receive_WAL", true, true},
		{`"Barman_Receive_WAL"`, false, true},
		{`"barman_receive_wal"`, true, true},
		{"standby1, barman_receive_wal", true, true},
		{"FIRST 1 (standby1, barman_receive_wal)", true, true},
		{"ANY 2 (s1, s2)", false, true},
		{"2 (s1, *)", true, true},
		{`s1, "a ""q"" b"`, false, true},
		{"s1,,s2", false, false},
		{`"unterminated`, false, false},
		{"FIRST 1 (a, b", false, false},
		{"a b c (x)", false, false},
	}
	for _, tc := range tests {
		names, err := parseStandbyNames(tc.setting)
		if (err == nil) != tc.ok {
			t.Errorf("parseStandbyNames(%q) error %v, want ok=%v", tc.setting, err, tc.ok)
			continue
		}
		if got := standbyListed(names, DefaultApplicationName); err == nil && got != tc.want {
			t.Errorf("%q lists %s = %v, want %v", tc.setting, DefaultApplicationName, got, tc.want)
		}
	}
}

func FuzzParseStandbyNames(f *testing.F) {
	for _, s := range []string{"", "*", "a, b", `FIRST 1 ("a""b", c)`, "ANY 2 (x)", "(", `"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		names, err := parseStandbyNames(s)
		if err == nil {
			for _, n := range names {
				if n.name == "" && !n.quoted {
					t.Fatalf("parseStandbyNames(%q): empty unquoted name", s)
				}
			}
		}
	})
}
