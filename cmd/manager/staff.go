package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/sets"
	genericapifilters "k8s.io/apiserver/pkg/endpoints/filters"
	apirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/server/options"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/velvetrope/velvetrope/api/v1alpha1"
	"github.com/velvetrope/velvetrope/internal/staff"
)

// staffServer serves internal/staff as the aggregated API
// staff.velvetrope.io/v1alpha1 (the chart's APIService). Every manager
// replica serves it, leader or not. The API server authenticates the caller
// and tells who it is in front-proxy headers, trusted only over a client
// certificate signed by the cluster's request-header CA; a direct caller's
// bearer token is checked with a TokenReview. Every request is then
// authorised with a SubjectAccessReview: get on invitations/redemptions,
// create on invitations/revocations, in the Invitation's namespace.
// k8s.io/apiserver's delegating options do all of that, as for any
// aggregated API server; the certificate is self-signed, in memory.
type staffServer struct {
	addr       string
	kubeconfig string // "" in a cluster: the Pod's own credentials
	handler    http.Handler
	log        logr.Logger
}

func (s staffServer) NeedLeaderElection() bool { return false }

func (s staffServer) Start(ctx context.Context) error {
	host, port, err := net.SplitHostPort(s.addr)
	if err != nil {
		return fmt.Errorf("--staff-bind-address: %w", err)
	}
	serving := options.NewSecureServingOptions()
	serving.BindPort, _ = strconv.Atoi(port)
	if host != "" {
		serving.BindAddress = net.ParseIP(host)
	}
	serving.ServerCert.CertDirectory = "" // in memory: the root filesystem is read-only
	if err := serving.MaybeDefaultWithSelfSignedCerts("localhost", nil, nil); err != nil {
		return err
	}
	var info *server.SecureServingInfo
	if err := serving.ApplyTo(&info); err != nil {
		return err
	}
	authn, authz := options.NewDelegatingAuthenticationOptions(), options.NewDelegatingAuthorizationOptions()
	authn.RemoteKubeConfigFile, authz.RemoteKubeConfigFile = s.kubeconfig, s.kubeconfig
	authz.AlwaysAllowPaths = []string{"/healthz"}
	var authnInfo server.AuthenticationInfo
	var authzInfo server.AuthorizationInfo
	err = errors.Join(authn.ApplyTo(&authnInfo, info, nil), authz.ApplyTo(&authzInfo))
	if err != nil {
		// Outside a cluster without KUBECONFIG (make run), nothing can
		// vouch for callers: no staff API, the operator runs on.
		s.log.Error(err, "Staff API off: cannot reach the API server to authenticate and authorise its callers")
		info.Listener.Close()
		<-ctx.Done()
		return nil
	}
	h := genericapifilters.WithAuthorization(s.handler, authzInfo.Authorizer, scheme.Codecs)
	h = genericapifilters.WithAuthentication(h, authnInfo.Authenticator, genericapifilters.Unauthorized(scheme.Codecs), nil, authnInfo.RequestHeaderConfig)
	h = genericapifilters.WithRequestInfo(h, &apirequest.RequestInfoFactory{APIPrefixes: sets.NewString("apis", "api"), GrouplessAPIPrefixes: sets.NewString("api")})
	stopped, _, err := info.Serve(h, 10*time.Second, ctx.Done())
	if err != nil {
		return err
	}
	s.log.Info("Serving the staff API", "group", staff.Group, "address", s.addr)
	<-stopped
	return nil
}

// staffUser names the caller the authentication filter found.
func staffUser(r *http.Request) string {
	if u, ok := apirequest.UserFrom(r.Context()); ok {
		return u.GetName()
	}
	return "unknown"
}

// staffInvitations gives internal/staff the Invitations, from the manager's
// cache, and records Events on them.
type staffInvitations struct {
	client   client.Client
	recorder events.EventRecorder
}

func (s staffInvitations) get(ctx context.Context, namespace, name string) (*v1alpha1.Invitation, error) {
	inv := &v1alpha1.Invitation{}
	err := s.client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, inv)
	if apierrors.IsNotFound(err) {
		return nil, staff.ErrNotFound
	}
	return inv, err
}

func (s staffInvitations) Code(ctx context.Context, namespace, name string) (string, error) {
	inv, err := s.get(ctx, namespace, name)
	if err != nil {
		return "", err
	}
	return inv.EffectiveCode(), nil
}

func (s staffInvitations) Revoked(ctx context.Context, namespace, name, note string) {
	if inv, err := s.get(ctx, namespace, name); err == nil {
		s.recorder.Eventf(inv, nil, corev1.EventTypeNormal, "RedemptionRevoked", "Revoke", "%s", note)
	} else if !errors.Is(err, staff.ErrNotFound) {
		logr.FromContextOrDiscard(ctx).Error(err, "Recording a revocation")
	}
}
