//go:build tools

// The real binaries the bench builds (ci/real-istio-build.sh). This file is
// never compiled: it keeps their modules in go.mod for `go mod tidy`.
package tools

import (
	_ "istio.io/istio/istioctl/cmd/istioctl"
	_ "istio.io/istio/pilot/cmd/pilot-agent"
	_ "istio.io/istio/pilot/cmd/pilot-discovery"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
)
