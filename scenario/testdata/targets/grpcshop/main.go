// Command grpcshop is a small gRPC server for the scenario tests: it
// answers the standard health service's Check for the service "shop" and
// NotFound for any other, on a line marked for tracing. It serves server
// reflection unless -no-reflection, so that a test can prove a step read
// the proto files it was given. It prints "READY pid=<pid> addr=<addr>".
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
)

type health struct {
	healthpb.UnimplementedHealthServer
}

func (health) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	caller := md.Get("caller")
	known := req.Service == "shop" //@trace(check)
	if !known {
		return nil, status.Errorf(codes.NotFound, "unknown service %q (caller %v)", req.Service, caller)
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

func main() {
	noReflection := flag.Bool("no-reflection", false, "do not serve server reflection")
	flag.Parse()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health{})
	if !*noReflection {
		reflection.Register(srv)
	}
	fmt.Printf("READY pid=%d addr=%s\n", os.Getpid(), lis.Addr())
	if err := srv.Serve(lis); err != nil {
		log.Fatal(err)
	}
}
