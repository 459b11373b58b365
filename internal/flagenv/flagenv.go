// Package flagenv is the one configuration style of the commands: every flag
// may also come from the environment variable named after it (--mongodb-uri:
// MONGODB_URI), and a flag given on the command line wins. Standard library
// only.
package flagenv

import (
	"flag"
	"fmt"
	"strings"
)

// Parse sets fs's flags from getenv, then from args. rename maps a flag to
// another variable name where a convention asks for one (nil: none).
func Parse(fs *flag.FlagSet, args []string, getenv func(string) string, rename map[string]string) error {
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		name := Name(f.Name)
		if r, ok := rename[f.Name]; ok {
			name = r
		}
		if v := getenv(name); v != "" && envErr == nil {
			if err := f.Value.Set(v); err != nil {
				envErr = fmt.Errorf("invalid value %q for %s: %v", v, name, err)
			}
		}
	})
	if envErr != nil {
		return envErr
	}
	return fs.Parse(args)
}

// Name is a flag's environment variable: its upper-case snake name.
func Name(flagName string) string {
	return strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}
