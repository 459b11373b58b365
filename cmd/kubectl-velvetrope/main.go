// Command kubectl-velvetrope is the staff's kubectl plugin (install it on
// PATH; kubectl finds it as "kubectl velvetrope"): it lists, exports and
// revokes the redemptions of an Invitation through the API server, which
// authenticates the caller with their kubeconfig and hands the request to
// the operator's staff API (internal/staff). No MongoDB credentials on a
// laptop. Wiring only.
//
//	kubectl velvetrope redemptions INVITATION [-n NAMESPACE] [-o table|csv|json]
//	kubectl velvetrope revoke INVITATION --email EMAIL [-n NAMESPACE]
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"text/tabwriter"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/velvetrope/velvetrope/internal/staff"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage: kubectl velvetrope redemptions INVITATION [-n NAMESPACE] [-o table|csv|json]\n       kubectl velvetrope revoke INVITATION --email EMAIL [-n NAMESPACE]")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errUsage
	}
	cmd := args[0]
	fs := flag.NewFlagSet("kubectl velvetrope "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
	kubecontext := fs.String("context", "", "kubeconfig context")
	namespace := fs.String("n", "", "namespace of the Invitation (default: the context's)")
	fs.StringVar(namespace, "namespace", "", "namespace of the Invitation (default: the context's)")
	output := fs.String("o", "table", "redemptions: table, csv or json")
	email := fs.String("email", "", "revoke: the person's email, in any spelling")
	// Flags may come after the Invitation's name, as kubectl users type them.
	var name string
	remaining := args[1:]
	for len(remaining) > 0 {
		if err := fs.Parse(remaining); err != nil {
			return fmt.Errorf("%w\n%v", errUsage, err)
		}
		if remaining = fs.Args(); len(remaining) > 0 {
			if name != "" {
				return fmt.Errorf("%w\nunexpected %q", errUsage, remaining[0])
			}
			name, remaining = remaining[0], remaining[1:]
		}
	}
	switch {
	case name == "":
		return errUsage
	case cmd != "redemptions" && cmd != "revoke":
		return fmt.Errorf("%w\nunknown command %q", errUsage, cmd)
	case cmd == "revoke" && *email == "":
		return fmt.Errorf("%w\nrevoke needs --email", errUsage)
	case *output != "table" && *output != "csv" && *output != "json":
		return fmt.Errorf("%w\n-o %q: want table, csv or json", errUsage, *output)
	}

	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = *kubeconfig
	loader := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: *kubecontext})
	cfg, err := loader.ClientConfig()
	if err != nil {
		return err
	}
	if *namespace == "" {
		if *namespace, _, err = loader.Namespace(); err != nil {
			return err
		}
	}
	// client-go's HTTP client carries the kubeconfig's credentials (and
	// its exec plugins, OIDC, ...); the bodies are ours to read.
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	base := strings.TrimSuffix(cfg.Host, "/") + fmt.Sprintf("/apis/%s/%s/namespaces/%s/invitations/%s/", staff.Group, staff.Version, *namespace, name)
	call := func(method, path, accept string, body []byte) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, method, base+path, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", accept)
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := httpClient.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		out, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		if err != nil {
			return nil, err
		}
		if resp.StatusCode/100 != 2 {
			// A Kubernetes Status, from the API server or the operator.
			var st struct{ Message string }
			if json.Unmarshal(out, &st) != nil || st.Message == "" {
				st.Message = strings.TrimSpace(string(out))
			}
			return nil, fmt.Errorf("%s (%s)", st.Message, resp.Status)
		}
		return out, nil
	}

	switch cmd {
	case "redemptions":
		if *output == "csv" {
			body, err := call(http.MethodGet, "redemptions", "text/csv", nil)
			if err != nil {
				return err
			}
			_, err = stdout.Write(body)
			return err
		}
		body, err := call(http.MethodGet, "redemptions", "application/json", nil)
		if err != nil {
			return err
		}
		switch *output {
		case "json":
			_, err = stdout.Write(body)
			return err
		case "table":
			var list staff.RedemptionList
			if err := json.Unmarshal(body, &list); err != nil {
				return err
			}
			w := tabwriter.NewWriter(stdout, 0, 4, 3, ' ', 0)
			fmt.Fprintln(w, "EMAIL\tREDEEMED\tLANGUAGE\tMAIL")
			for _, r := range list.Redemptions {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", r.Email, r.RedeemedAt.Format(time.RFC3339), r.Language, r.Mail)
			}
			return w.Flush()
		}
	case "revoke":
		body, _ := json.Marshal(staff.Revocation{Email: *email})
		out, err := call(http.MethodPost, "revocations", "application/json", body)
		if err != nil {
			return err
		}
		var r staff.Revocation
		if err := json.Unmarshal(out, &r); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "Revoked the redemption of %s/%s by %s (redeemed %s): the place is free again.\n", *namespace, name, r.Email, r.RedeemedAt.Format(time.RFC3339))
	}
	return nil
}
