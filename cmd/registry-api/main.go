// Command registry-api serves the Kubernetes-hosted service registry over
// HTTP/JSON. Configuration comes from REGISTRY_* environment variables; run
// with --help to list them.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	// Zone data in the binary (about 450 KB): REGISTRY_RUN_DATE_ZONE loads
	// in any image, with or without /usr/share/zoneinfo.
	_ "time/tzdata"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "registry-api:", err)
		os.Exit(1)
	}
}
