// Command etcd is upstream etcd's server main, built from the published module
// (upstream's own go.mod has replace directives, so `go install` cannot build it).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
