package scenario

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bufbuild/protocompile"
	"github.com/bufbuild/protocompile/linker"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// GRPCStep is a unary gRPC call, over plaintext HTTP/2 or TLS, and the
// status it must get. The method's messages come from the .proto files in Protos or,
// when there are none, from the server's reflection service (v1).
type GRPCStep struct {
	Target string `yaml:"target"` // HOST:PORT
	// Method is package.Service/Method, as in grpcurl.
	Method string `yaml:"method"`
	// Request is the request message in protobuf's JSON form (field names
	// as in the .proto or in lowerCamelCase); default {}.
	Request  string            `yaml:"request"`
	Metadata map[string]string `yaml:"metadata"`
	// Protos are the .proto files defining the method, relative to the
	// scenario's directory or to one of ImportPaths; google/protobuf's own
	// files need not be given.
	Protos      []string `yaml:"protos"`
	ImportPaths []string `yaml:"importPaths"`
	// Code is the status the call must get: OK (default), NotFound or
	// NOT_FOUND, and so on.
	Code string `yaml:"code"`
	// TLS, when given (tls: {} for the system's roots), makes the call
	// over TLS.
	TLS *GRPCTLS `yaml:"tls"`
}

// GRPCTLS is how a gRPC step trusts its server.
type GRPCTLS struct {
	// CA is a PEM file of the certificates that sign the server's,
	// relative to the scenario's directory; default: the system's roots.
	CA string `yaml:"ca"`
	// ServerName is the name the server's certificate must carry, when
	// not the target's host.
	ServerName string `yaml:"serverName"`
}

// parseCode reads a gRPC status code by its Go or its protobuf name.
func parseCode(name string) (codes.Code, error) {
	if name == "" {
		return codes.OK, nil
	}
	want := strings.ToLower(strings.ReplaceAll(name, "_", ""))
	var known []string
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		if strings.ToLower(c.String()) == want {
			return c, nil
		}
		known = append(known, c.String())
	}
	return 0, fmt.Errorf("%q is not a gRPC status code: write one of %s", name, strings.Join(known, ", "))
}

// splitMethod reads package.Service/Method (a leading / allowed) into the
// service's full name and the method's.
func splitMethod(m string) (service, method string, err error) {
	s, meth, ok := strings.Cut(strings.TrimPrefix(m, "/"), "/")
	if !ok || s == "" || meth == "" || strings.Contains(meth, "/") {
		return "", "", fmt.Errorf("%q: write package.Service/Method, such as grpc.health.v1.Health/Check", m)
	}
	return s, meth, nil
}

// grpcClients are a run's gRPC connections, one per target, and the
// methods it has resolved, each once; parallel steps share them.
type grpcClients struct {
	// mu guards the maps.
	mu      sync.Mutex
	conns   map[string]*grpc.ClientConn
	methods map[string]*grpcMethod // by source key and method
}

// grpcMethod is a method and the types its messages may refer to (for
// google.protobuf.Any in JSON).
type grpcMethod struct {
	desc  protoreflect.MethodDescriptor
	types interface {
		protoregistry.MessageTypeResolver
		protoregistry.ExtensionTypeResolver
	}
}

func (g *grpcClients) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, c := range g.conns {
		c.Close()
	}
	g.conns = nil
}

// conn is the run's connection to target, over TLS if tc is not nil.
func (g *grpcClients) conn(dir, target string, tc *GRPCTLS) (*grpc.ClientConn, error) {
	key := target
	creds := insecure.NewCredentials()
	if tc != nil {
		key += "\x00tls\x00" + tc.CA + "\x00" + tc.ServerName
		cfg := &tls.Config{ServerName: tc.ServerName}
		if tc.CA != "" {
			file := tc.CA
			if !filepath.IsAbs(file) {
				file = filepath.Join(dir, file)
			}
			pem, err := os.ReadFile(file)
			if err != nil {
				return nil, fmt.Errorf("reading tls.ca: %w", err)
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("tls.ca %s holds no PEM certificate: give the CA's certificate, BEGIN CERTIFICATE and all", file)
			}
		}
		creds = credentials.NewTLS(cfg)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if c, ok := g.conns[key]; ok {
		return c, nil
	}
	c, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, err
	}
	if g.conns == nil {
		g.conns = map[string]*grpc.ClientConn{}
	}
	g.conns[key] = c
	return c, nil
}

// method resolves st's method, from its proto files or by reflection over
// conn, once per run.
func (g *grpcClients) method(ctx context.Context, dir string, st *GRPCStep, conn *grpc.ClientConn) (*grpcMethod, error) {
	service, name, err := splitMethod(st.Method)
	if err != nil {
		return nil, err
	}
	key := "reflection " + st.Target
	if len(st.Protos) > 0 {
		key = "protos " + strings.Join(st.Protos, "\x00") + "\x01" + strings.Join(st.ImportPaths, "\x00")
	}
	key += "\x02" + service + "/" + name
	g.mu.Lock()
	m, ok := g.methods[key]
	g.mu.Unlock()
	if ok {
		return m, nil
	}
	var find func(protoreflect.FullName) (protoreflect.Descriptor, error)
	m = &grpcMethod{}
	if len(st.Protos) > 0 {
		files, err := compileProtos(ctx, dir, st)
		if err != nil {
			return nil, err
		}
		r := files.AsResolver()
		find, m.types = r.FindDescriptorByName, r
	} else {
		files, err := reflectFiles(ctx, conn, service)
		if c := status.Code(err); c == codes.Unavailable || c == codes.DeadlineExceeded {
			return nil, fmt.Errorf("reaching %s: %w; check that the service is up and serves gRPC there, and whether it wants TLS (tls:)", st.Target, err)
		}
		if err != nil {
			return nil, fmt.Errorf("asking %s for %s by server reflection: %w; give the service's .proto files in protos, or register reflection in the server", st.Target, service, err)
		}
		find, m.types = files.FindDescriptorByName, dynamicpb.NewTypes(files)
	}
	d, err := find(protoreflect.FullName(service))
	if err != nil {
		return nil, fmt.Errorf("no service %s: %w; check the method's package and service name", service, err)
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil, fmt.Errorf("%s is a %T, not a service: write package.Service/Method", service, d)
	}
	m.desc = sd.Methods().ByName(protoreflect.Name(name))
	if m.desc == nil {
		var names []string
		for i := range sd.Methods().Len() {
			names = append(names, string(sd.Methods().Get(i).Name()))
		}
		return nil, fmt.Errorf("service %s has no method %s: its methods are %s", service, name, strings.Join(names, ", "))
	}
	if m.desc.IsStreamingClient() || m.desc.IsStreamingServer() {
		return nil, fmt.Errorf("%s/%s streams: a step calls unary methods only; call it from a sh step (grpcurl) instead", service, name)
	}
	g.mu.Lock()
	if g.methods == nil {
		g.methods = map[string]*grpcMethod{}
	}
	g.methods[key] = m
	g.mu.Unlock()
	return m, nil
}

// compileProtos parses and links st's proto files.
func compileProtos(ctx context.Context, dir string, st *GRPCStep) (linker.Files, error) {
	paths := []string{dir}
	for _, p := range st.ImportPaths {
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		paths = append(paths, p)
	}
	c := protocompile.Compiler{Resolver: protocompile.WithStandardImports(&protocompile.SourceResolver{ImportPaths: paths})}
	files, err := c.Compile(ctx, st.Protos...)
	if err != nil {
		return nil, fmt.Errorf("reading the proto files %s: %w", strings.Join(st.Protos, ", "), err)
	}
	return files, nil
}

// reflectFiles asks the server's reflection service for the file defining
// service and every file it imports.
func reflectFiles(ctx context.Context, conn *grpc.ClientConn, service string) (*protoregistry.Files, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := rpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		return nil, err
	}
	defer stream.CloseSend()
	got := map[string]*descriptorpb.FileDescriptorProto{}
	ask := func(req *rpb.ServerReflectionRequest) error {
		if err := stream.Send(req); err != nil {
			return err
		}
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		if e := resp.GetErrorResponse(); e != nil {
			return status.Error(codes.Code(e.GetErrorCode()), e.GetErrorMessage())
		}
		for _, b := range resp.GetFileDescriptorResponse().GetFileDescriptorProto() {
			fd := &descriptorpb.FileDescriptorProto{}
			if err := proto.Unmarshal(b, fd); err != nil {
				return fmt.Errorf("reading a file descriptor the server sent: %w", err)
			}
			got[fd.GetName()] = fd
		}
		return nil
	}
	err = ask(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: service}})
	if err != nil {
		return nil, err
	}
	// A server may send only the file asked for: ask for each import
	// missing, and take the well-known types from this program if the
	// server has not got them.
	for {
		var missing []string
		for _, fd := range got {
			for _, dep := range fd.GetDependency() {
				if got[dep] == nil && !slices.Contains(missing, dep) {
					missing = append(missing, dep)
				}
			}
		}
		if len(missing) == 0 {
			break
		}
		for _, dep := range missing {
			err := ask(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_FileByFilename{FileByFilename: dep}})
			if got[dep] != nil {
				continue
			}
			if local, lerr := protoregistry.GlobalFiles.FindFileByPath(dep); lerr == nil {
				got[dep] = protodesc.ToFileDescriptorProto(local)
				continue
			}
			if err == nil {
				err = errors.New("the server did not send it")
			}
			return nil, fmt.Errorf("asking for %s: %w", dep, err)
		}
	}
	set := &descriptorpb.FileDescriptorSet{}
	for _, name := range slices.Sorted(maps.Keys(got)) {
		set.File = append(set.File, got[name])
	}
	files, err := protodesc.NewFiles(set)
	if err != nil {
		return nil, fmt.Errorf("reading the descriptors the server sent: %w", err)
	}
	return files, nil
}

// doGRPC makes the call st describes.
func (r *Runner) doGRPC(ctx context.Context, st *GRPCStep, where string, vars map[string]string) error {
	target, err := expand(st.Target, vars)
	if err != nil {
		return fmt.Errorf("%s: grpc target: %w", where, err)
	}
	body, err := expand(st.Request, vars)
	if err != nil {
		return fmt.Errorf("%s: grpc request: %w", where, err)
	}
	if strings.TrimSpace(body) == "" {
		body = "{}"
	}
	want, err := parseCode(st.Code)
	if err != nil {
		return fmt.Errorf("%s: grpc code: %w", where, err)
	}
	conn, err := r.grpc.conn(r.s.Dir, target, st.TLS)
	if err != nil {
		return fmt.Errorf("%s: connecting to %s: %w", where, target, err)
	}
	resolved := *st
	resolved.Target = target
	m, err := r.grpc.method(ctx, r.s.Dir, &resolved, conn)
	if err != nil {
		return fmt.Errorf("%s: grpc %s: %w", where, st.Method, err)
	}
	req := dynamicpb.NewMessage(m.desc.Input())
	if err := (protojson.UnmarshalOptions{Resolver: m.types}).Unmarshal([]byte(body), req); err != nil {
		return fmt.Errorf("%s: grpc %s: the request is not a %s in protobuf's JSON form: %v; its fields are %s", where, st.Method, m.desc.Input().FullName(), err, fieldNames(m.desc.Input()))
	}
	md := metadata.MD{}
	for _, k := range slices.Sorted(maps.Keys(st.Metadata)) {
		v, err := expand(st.Metadata[k], vars)
		if err != nil {
			return fmt.Errorf("%s: grpc metadata %s: %w", where, k, err)
		}
		md.Append(k, v)
	}
	if len(md) > 0 {
		ctx = metadata.NewOutgoingContext(ctx, md)
	}
	resp := dynamicpb.NewMessage(m.desc.Output())
	full := fmt.Sprintf("/%s/%s", m.desc.Parent().FullName(), m.desc.Name())
	start := time.Now()
	err = conn.Invoke(ctx, full, req, resp)
	got := status.Convert(err)
	if got.Code() != want {
		answer := got.Message()
		if err == nil {
			b, _ := protojson.MarshalOptions{Resolver: m.types}.Marshal(resp)
			answer = string(b)
		}
		hint := ""
		if got.Code() == codes.Unavailable {
			hint = "; check that the service is up, and whether it wants TLS (tls:)"
		}
		return fmt.Errorf("%s: grpc %s on %s answered %s after %v, want %s: %s%s", where, st.Method, target, got.Code(), time.Since(start).Round(time.Millisecond), want, clip(answer, 300), hint)
	}
	return nil
}

// fieldNames lists a message's fields by their JSON names, for an error.
func fieldNames(md protoreflect.MessageDescriptor) string {
	var names []string
	for i := range md.Fields().Len() {
		names = append(names, md.Fields().Get(i).JSONName())
	}
	if len(names) == 0 {
		return "none: send {}"
	}
	return strings.Join(names, ", ")
}
