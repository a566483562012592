// Command clientgo is run_all.py's client-go contender: a SharedIndexInformer on pods
// with a namespace index and a counting handler, timed like the Python contenders.
//
// It syncs (LIST, or a streaming list where client-go does one by default), reports
// when it has synced, waits for the orchestrator's go-ahead, then counts UPDATE
// notifications until -events have arrived. One JSON line on stdout carries the same
// fields as the Python contenders: wall and CPU seconds of the sync and of the watch,
// memory before and after the sync, peak RSS. Memory is Go heap in use after a forced
// GC (runtime.MemStats.HeapAlloc), in KiB, so bytes per stored pod is the informer's
// own footprint.
//
// Against run_all's bench server (-go-url set) it speaks JSON and, as that server
// serves no streaming lists, runs with the WatchListClient feature off (run_all sets
// KUBE_FEATURE_WatchListClient=false). Against a real kube-apiserver (-kubeconfig)
// it runs with client-go's defaults: protobuf for built-in kinds, streaming lists.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
)

type result struct {
	Sync       float64 `json:"sync"`
	SyncCPU    float64 `json:"sync_cpu"`
	Events     float64 `json:"events"`
	EventsCPU  float64 `json:"events_cpu"`
	Base       uint64  `json:"base"`
	AfterSync  uint64  `json:"after_sync"`
	PeakSync   uint64  `json:"peak_sync"`
	Peak       uint64  `json:"peak"`
	BaseRSS    uint64  `json:"base_rss"`
	AfterRSS   uint64  `json:"after_sync_rss"`
	Stored     int     `json:"stored"`
	Protocol   string  `json:"content_type"`
	MemoryUnit string  `json:"memory"`
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// heapKiB is the live Go heap after a full collection, in KiB.
func heapKiB() uint64 {
	runtime.GC()
	debug.FreeOSMemory()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc / 1024
}

// peakRSSKiB is VmHWM (the peak resident set) from /proc/self/status, in KiB.
func peakRSSKiB() uint64 { return procStatusKiB("VmHWM:") }

// rssKiB is VmRSS (the resident set now), in KiB.
func rssKiB() uint64 { return procStatusKiB("VmRSS:") }

func procStatusKiB(field string) uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, field) {
			fields := strings.Fields(line)
			if len(fields) >= 2 {
				v, _ := strconv.ParseUint(fields[1], 10, 64)
				return v
			}
		}
	}
	return 0
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "clientgo: "+format+"\n", args...)
	os.Exit(1)
}

func config(server, kubeconfig string) *rest.Config {
	if kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			fail("kubeconfig %s: %v", kubeconfig, err)
		}
		return cfg
	}
	return &rest.Config{Host: server, ContentConfig: rest.ContentConfig{ContentType: "application/json"}}
}

// waitForGo blocks until the orchestrator lets the watch events flow: a GET of goURL
// (run_all's bench server), or a line on stdin after "synced" on stderr (--real).
func waitForGo(goURL string) {
	if goURL != "" {
		resp, err := http.Get(goURL)
		if err != nil {
			fail("GET %s: %v", goURL, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return
	}
	fmt.Fprintln(os.Stderr, "synced")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		fail("waiting for the go-ahead on stdin: %v", err)
	}
}

func main() {
	server := flag.String("server", "", "API server URL (JSON, no credentials)")
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig (client-go defaults: protobuf)")
	size := flag.Int("size", 0, "pods the informer must hold once synced")
	events := flag.Int("events", 0, "UPDATE notifications to count after the go-ahead")
	goURL := flag.String("go-url", "", "GET this once synced to release the watch events")
	flag.Parse()
	if (*server == "") == (*kubeconfig == "") || *size <= 0 || *events < 0 {
		fail("need exactly one of -server/-kubeconfig, -size > 0 and -events >= 0")
	}
	cfg := config(*server, *kubeconfig)
	cfg.QPS, cfg.Burst = -1, 0 // no client-side rate limit: one informer makes few requests
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		fail("client: %v", err)
	}
	protocol := cfg.ContentType
	if protocol == "" {
		protocol = "application/vnd.kubernetes.protobuf (client-go default)"
	}

	var adds, updates atomic.Int64
	base := heapKiB()
	baseRSS := rssKiB()
	t0, c0 := time.Now(), cpuSeconds()
	informer := coreinformers.NewPodInformer(client, metav1.NamespaceAll, 0,
		cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	reg, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { adds.Add(1) },
		UpdateFunc: func(oldObj, newObj any) { updates.Add(1) },
		DeleteFunc: func(obj any) {},
	})
	if err != nil {
		fail("handler: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go informer.Run(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced, reg.HasSynced) {
		fail("informer did not sync")
	}
	t1, c1 := time.Now(), cpuSeconds()
	peakSync := peakRSSKiB()
	afterSync := heapKiB()
	afterRSS := rssKiB()
	stored := len(informer.GetIndexer().List())
	if stored != *size {
		fail("synced %d pods, expected %d", stored, *size)
	}
	// the namespace index is there and holds every pod of the first pod's namespace
	first := informer.GetIndexer().List()[0].(*corev1.Pod)
	if inNamespace, err := informer.GetIndexer().ByIndex(cache.NamespaceIndex, first.Namespace); err != nil || len(inNamespace) == 0 {
		fail("namespace index: %v (%d pods in %q)", err, len(inNamespace), first.Namespace)
	}

	waitForGo(*goURL)
	t2, c2 := time.Now(), cpuSeconds()
	for updates.Load() < int64(*events) {
		time.Sleep(time.Millisecond)
	}
	t3, c3 := time.Now(), cpuSeconds()
	out := result{
		Sync: t1.Sub(t0).Seconds(), SyncCPU: c1 - c0,
		Events: t3.Sub(t2).Seconds(), EventsCPU: c3 - c2,
		Base: base, AfterSync: afterSync, PeakSync: peakSync, Peak: peakRSSKiB(),
		BaseRSS: baseRSS, AfterRSS: afterRSS, Stored: stored, Protocol: protocol, MemoryUnit: "go heap KiB after GC",
	}
	line, _ := json.Marshal(out)
	fmt.Println(string(line))
}
