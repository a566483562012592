// Command etcd is the etcd server at the release k8s.io/kubernetes pins, built from the Go
// module proxy so the tests need no etcd from the system's packages.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
