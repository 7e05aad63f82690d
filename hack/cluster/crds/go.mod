module inferops.local/sandbox/crds

go 1.26.0

require (
	github.com/kedacore/keda/v2 v2.21.0 // indirect
	github.com/prometheus-operator/prometheus-operator v0.85.0 // indirect
)
