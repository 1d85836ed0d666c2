// Command etcd is etcd's server, built from go.etcd.io/etcd/server/v3 at the
// version go.mod pins: etcd publishes no importable main package of its own.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
