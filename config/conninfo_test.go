package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestConninfoRedaction(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, want string
	}{
		{"host=h user=u password=s3cret dbname=d", "host=h user=u password=******** dbname=d"},
		{"password=s3cret", "password=********"},
		{"host=h password = s3cret", "host=h password = ********"},
		{"host=h password='s3 cr\\'et' dbname=d", "host=h password=******** dbname=d"},
		{"host=h password='unterminated secret", "host=h password=********"},
		{"host=h password=a\\ b user=u", "host=h password=******** user=u"},
		{"host=h PASSWORD=s3cret", "host=h PASSWORD=********"},
		{"host=h sslpassword=s3cret", "host=h sslpassword=********"},
		{"host=h password=", "host=h password=********"},
		{"host=h user=u", "host=h user=u"},
		{"host=h mypassword=x", "host=h mypassword=x"},
		{"postgres://u:s3cret@h:5432/db", "postgres://u:********@h:5432/db"},
		{"postgresql://u:s3cret@h1:5432,h2:5433/db?sslmode=require", "postgresql://u:********@h1:5432,h2:5433/db?sslmode=require"},
		{"postgres://u@h/db", "postgres://u@h/db"},
		{"postgres://h/db?user=u&password=s3cret&sslmode=disable", "postgres://h/db?user=u&password=********&sslmode=disable"},
		{"postgres://u:p@ss@h/db", "postgres://u:********@h/db"},
		{"POSTGRES://u:s3cret@h/db", "POSTGRES://u:********@h/db"},
		{"", ""},
	} {
		c := Conninfo(tc.in)
		if got := c.String(); got != tc.want {
			t.Errorf("Conninfo(%q).String() = %q, want %q", tc.in, got, tc.want)
		}
		if c.Raw() != tc.in {
			t.Errorf("Raw() = %q", c.Raw())
		}
		if strings.Contains(tc.in, "s3") {
			for _, out := range []string{fmt.Sprint(c), fmt.Sprintf("%v %s %q %#v %+v", c, c, c, c, c)} {
				if strings.Contains(out, "s3") {
					t.Errorf("fmt output leaks the password: %s", out)
				}
			}
			b, _ := json.Marshal(struct{ C Conninfo }{c})
			if strings.Contains(string(b), "s3") {
				t.Errorf("json leaks the password: %s", b)
			}
		}
	}
}

func TestServerLogNeverShowsPassword(t *testing.T) {
	t.Parallel()
	s := DefaultServer("pg1")
	s.Conninfo = "host=h user=u password=TopSecret1"
	s.StreamingConninfo = "postgres://rep:TopSecret2@h/db"
	s.PrimaryConninfo = "host=p password='Top Secret3'"
	for name, attr := range map[string]slog.Attr{
		"pointer": slog.Any("server", s),
		"value":   slog.Any("server", *s),
	} {
		var buf bytes.Buffer
		slog.New(slog.NewJSONHandler(&buf, nil)).Info("loaded", attr)
		out := buf.String()
		if strings.Contains(out, "TopSecret") || strings.Contains(out, "Top Secret") {
			t.Errorf("%s: slog JSON leaks a password: %s", name, out)
		}
		if !strings.Contains(out, "host=h user=u password=********") {
			t.Errorf("%s: redacted conninfo missing from %s", name, out)
		}
		buf.Reset()
		slog.New(slog.NewTextHandler(&buf, nil)).Info("loaded", attr)
		if strings.Contains(buf.String(), "TopSecret") {
			t.Errorf("%s: slog text leaks a password: %s", name, buf.String())
		}
	}
	if out := fmt.Sprintf("%v %+v", s, *s); strings.Contains(out, "TopSecret") {
		t.Errorf("fmt leaks a password: %s", out)
	}
	b, _ := json.Marshal(s.Redacted())
	if strings.Contains(string(b), "TopSecret") {
		t.Errorf("Redacted leaks a password: %s", b)
	}
}
