package controllers

import (
	"context"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"go.mongodb.org/mongo-driver/v2/mongo"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	v1alpha1 "github.com/velvetrope/velvetrope/api/v1alpha1"
	"github.com/velvetrope/velvetrope/internal/invite"
	"github.com/velvetrope/velvetrope/internal/mongostore"
	"github.com/velvetrope/velvetrope/internal/testbed"
)

// The suite runs the reconciler in a real manager against the envtest control
// plane (kube-apiserver + etcd built by internal/testbed) and the FerretDB
// test bed. There is no kubelet: fleet objects are checked as API objects.
var (
	restConfig  *rest.Config
	k8sClient   client.Client
	testEnv     *envtest.Environment
	mongoServer *testbed.Mongo
	operatorDB  *mongo.Database
	store       *mongostore.Store
	summaries   *slowSummaries // the reconciler's store
	kubectl     string
	stopManager context.CancelFunc
)

var testFleet = FleetConfig{
	Image: "velvetrope:test", ImagePullPolicy: corev1.PullIfNotPresent,
	MongoSecretName: "velvetrope-mongodb", MongoSecretKey: "uri", MongoDatabase: "velvetrope", MailSecretName: "velvetrope-mail",
	MinReplicas: 2, MaxReplicas: 10, CPUTarget: 60, PodCapacityRPS: 1000,
	PrescaleWindow: 10 * time.Minute, DrainDelay: 5 * time.Second, ShutdownTimeout: 15 * time.Second,
	CPURequest: resource.MustParse("250m"), MemoryRequest: resource.MustParse("64Mi"), MemoryLimit: resource.MustParse("256Mi"),
	PrescaleHold: 30 * time.Minute, NetworkPolicy: true,
}

// testRoutes makes both kinds of route; the API server validates them with
// the Gateway API's own CRDs.
var testRoutes = RouteConfig{Gateways: []GatewayRef{{Namespace: "edge", Name: "public"}}, Hostnames: []string{"beta.example.com"},
	Ingress: true, IngressClass: "front"}

func TestControllers(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Controllers")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	assets, err := testbed.EnvtestAssets()
	Expect(err).NotTo(HaveOccurred())
	kubectl = filepath.Join(assets, "kubectl")
	gatewayCRDs, err := testbed.GatewayAPICRDs()
	Expect(err).NotTo(HaveOccurred())
	testEnv = &envtest.Environment{
		CRDDirectoryPaths:     append([]string{filepath.Join("..", "config", "crd", "bases")}, gatewayCRDs...),
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
	}
	restConfig, err = testEnv.Start()
	Expect(err).NotTo(HaveOccurred())

	scheme := runtime.NewScheme()
	Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
	Expect(v1alpha1.AddToScheme(scheme)).To(Succeed())
	Expect(gatewayv1.Install(scheme)).To(Succeed())
	k8sClient, err = client.New(restConfig, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())

	mongoServer, err = testbed.StartMongo()
	Expect(err).NotTo(HaveOccurred())
	// The manager's own client settings (fast server selection).
	mongoClient, err := mongostore.Connect(mongoServer.URI, "operator-test")
	Expect(err).NotTo(HaveOccurred())
	operatorDB = mongoClient.Database(testbed.UniqueName("operator"))
	store = mongostore.New(operatorDB)
	summaries = &slowSummaries{Store: store}
	Expect(store.EnsureIndexes(context.Background())).To(Succeed())

	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	Expect(err).NotTo(HaveOccurred())
	var ctx context.Context
	ctx, stopManager = context.WithCancel(context.Background())
	applies = &applyCounter{Client: mgr.GetClient(), n: map[string]int{}}
	r := &InvitationReconciler{
		Client:         applies,
		Reader:         mgr.GetAPIReader(),
		Store:          summaries,
		Recorder:       mgr.GetEventRecorder("velvetrope-operator"),
		Now:            time.Now,
		Fleet:          testFleet,
		Routes:         testRoutes,
		UsageInterval:  300 * time.Millisecond,
		MailDelayAfter: 2 * time.Second,
	}
	Expect(r.SetupWithManager(ctx, mgr)).To(Succeed())
	go func() {
		defer GinkgoRecover()
		Expect(mgr.Start(ctx)).To(Succeed())
	}()
})

var _ = AfterSuite(func() {
	if stopManager != nil {
		stopManager()
	}
	if testEnv != nil {
		Expect(testEnv.Stop()).To(Succeed())
	}
	if operatorDB != nil {
		operatorDB.Drop(context.Background()) // a server at MONGODB_URI outlives the suite
	}
	if mongoServer != nil {
		mongoServer.Stop()
	}
})

// applies counts the reconciler's server-side applies per namespace, so a
// spec can see that unchanged fleets are not applied again on every pass.
var applies *applyCounter

type applyCounter struct {
	client.Client
	mu sync.Mutex
	n  map[string]int
}

func (c *applyCounter) Apply(ctx context.Context, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
	if o, ok := obj.(interface{ GetNamespace() *string }); ok && o.GetNamespace() != nil {
		c.mu.Lock()
		c.n[*o.GetNamespace()]++
		c.mu.Unlock()
	}
	return c.Client.Apply(ctx, obj, opts...)
}

func (c *applyCounter) in(namespace string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[namespace]
}

// slowSummaries is the test bed, with the usage board's summaries (the
// aggregations over every code) slowed on demand: FerretDB after a large
// crowd's mail, where each reads and decodes the whole collection.
type slowSummaries struct {
	*mongostore.Store
	delay atomic.Int64 // nanoseconds
	// What the board read: refreshes (tallies), and reads of changed
	// codes' times with the codes they named.
	tallies, times, timesCodes atomic.Int64
}

func (s *slowSummaries) wait(ctx context.Context) {
	select {
	case <-time.After(time.Duration(s.delay.Load())):
	case <-ctx.Done():
	}
}

func (s *slowSummaries) Tallies(ctx context.Context) (map[string]invite.Tally, error) {
	s.tallies.Add(1)
	s.wait(ctx)
	return s.Store.Tallies(ctx)
}

func (s *slowSummaries) MailByCode(ctx context.Context) (map[string]invite.MailCounts, error) {
	s.wait(ctx)
	return s.Store.MailByCode(ctx)
}

func (s *slowSummaries) CodeTimes(ctx context.Context, latest, pending []string) (last, oldestPending map[string]time.Time, err error) {
	s.times.Add(1)
	s.timesCodes.Add(int64(len(latest) + len(pending)))
	return s.Store.CodeTimes(ctx, latest, pending)
}
