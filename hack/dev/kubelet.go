package main

import (
	"context"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/velvetrope/velvetrope/api/v1alpha1"
	"github.com/velvetrope/velvetrope/controllers"
	"github.com/velvetrope/velvetrope/internal/testbed"
)

// kubelet stands in for the kubelets and Services a cluster would have: it
// keeps, for every redeemer Deployment the operator made, as many local
// redeemer processes as the Deployment asks for, and routes each code's
// requests to its campaign's processes.
type kubelet struct {
	client        client.Client
	bin, mongoURI string
	mailDir       string
	say           func(string, ...any)
	mu            sync.Mutex
	fleets        map[string][]*testbed.Process // "<namespace>/<campaign>"
	codes         map[string]string             // code -> fleet key
	next          int
}

func (k *kubelet) run(ctx context.Context) {
	for ctx.Err() == nil {
		k.sync(ctx)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// sync makes the processes match the Deployments, and the routes the
// Invitations.
func (k *kubelet) sync(ctx context.Context) {
	var deployments appsv1.DeploymentList
	if err := k.client.List(ctx, &deployments, client.MatchingLabels{controllers.LabelManagedBy: "velvetrope-operator"}); err != nil {
		return
	}
	want := map[string]int{}
	database := map[string]string{}
	for _, d := range deployments.Items {
		key := d.Namespace + "/" + d.Labels[controllers.LabelCampaign]
		want[key] = 1
		if d.Spec.Replicas != nil {
			want[key] = int(*d.Spec.Replicas)
		}
		for _, e := range d.Spec.Template.Spec.Containers[0].Env {
			if e.Name == "MONGODB_DATABASE" {
				database[key] = e.Value
			}
		}
	}
	var invs v1alpha1.InvitationList
	codes := map[string]string{}
	if err := k.client.List(ctx, &invs); err == nil {
		for _, inv := range invs.Items {
			codes[inv.EffectiveCode()] = inv.Namespace + "/" + inv.Spec.Campaign
		}
	}

	k.mu.Lock()
	if k.fleets == nil {
		k.fleets = map[string][]*testbed.Process{}
	}
	k.codes = codes
	var stop []*testbed.Process
	for key, procs := range k.fleets {
		if n, ok := want[key]; !ok || len(procs) > n {
			keep := min(len(procs), want[key])
			stop = append(stop, procs[keep:]...)
			k.fleets[key] = procs[:keep]
		}
	}
	var start []string
	for key, n := range want {
		for range n - len(k.fleets[key]) {
			start = append(start, key)
		}
	}
	k.mu.Unlock()

	for _, p := range stop {
		p.Cmd.Process.Signal(syscall.SIGTERM)
		go p.Wait(30 * time.Second)
	}
	for _, key := range start {
		p, err := testbed.StartProcess(k.bin, []string{"--listen", "127.0.0.1:0", "--drain-delay", "1s",
			"--trusted-proxies", "127.0.0.0/8"},
			"MONGODB_URI="+k.mongoURI, "MONGODB_DATABASE="+database[key], "MAIL_DIR="+k.mailDir)
		if err != nil {
			k.say("starting a redeemer for %s: %v", key, err)
			continue
		}
		k.say("Redeemer for campaign %s on %s", key, p.Addr)
		k.mu.Lock()
		k.fleets[key] = append(k.fleets[key], p)
		k.mu.Unlock()
	}
}

func (k *kubelet) stopAll() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, procs := range k.fleets {
		for _, p := range procs {
			p.Cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, procs := range k.fleets {
		for _, p := range procs {
			if p.Wait(10*time.Second) != nil {
				p.Kill()
			}
		}
	}
	k.fleets = nil
}

// ServeHTTP routes /invitations/{code}… to a redeemer of the code's
// campaign, round-robin; /metrics to any redeemer.
func (k *kubelet) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	k.mu.Lock()
	var procs []*testbed.Process
	if rest, ok := strings.CutPrefix(r.URL.Path, "/invitations/"); ok {
		code, _, _ := strings.Cut(rest, "/")
		procs = k.fleets[k.codes[code]]
	} else if r.URL.Path == "/metrics" {
		for _, p := range k.fleets {
			procs = append(procs, p...)
		}
	}
	var target string
	if len(procs) > 0 {
		k.next++
		target = procs[k.next%len(procs)].Addr
	}
	k.mu.Unlock()
	if target == "" {
		http.Error(w, "no redeemer serves this path (yet): is the code an Invitation, and has the operator created its fleet?", http.StatusNotFound)
		return
	}
	httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: target}).ServeHTTP(w, r)
}
