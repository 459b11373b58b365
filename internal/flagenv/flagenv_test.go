package flagenv

import (
	"flag"
	"io"
	"testing"
)

func TestParse(t *testing.T) {
	env := map[string]string{"MONGODB_URI": "mongodb://env", "WORKERS": "2", "LISTEN_ADDR": ":9", "DEBUG": "true"}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	uri := fs.String("mongodb-uri", "", "")
	workers := fs.Int("workers", 1, "")
	listen := fs.String("listen", ":8080", "")
	debug := fs.Bool("debug", false, "")
	if err := Parse(fs, []string{"--workers=8"}, func(k string) string { return env[k] }, map[string]string{"listen": "LISTEN_ADDR"}); err != nil {
		t.Fatal(err)
	}
	if *uri != "mongodb://env" || *workers != 8 || *listen != ":9" || !*debug {
		t.Errorf("uri %q workers %d listen %q debug %v: env fills in, a flag wins, renames apply", *uri, *workers, *listen, *debug)
	}

	fs = flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Int("workers", 1, "")
	if err := Parse(fs, nil, func(k string) string { return map[string]string{"WORKERS": "many"}[k] }, nil); err == nil || err.Error() != `invalid value "many" for WORKERS: parse error` {
		t.Errorf("bad environment value: %v", err)
	}
}
