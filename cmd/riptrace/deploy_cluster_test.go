package main_test

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestDeployCluster: deploy/cluster's configurations load in nats-server
// as installed (cluster.conf beside nats.conf), and say what the README
// says: three routes, leaf nodes accepted, the JetStream domain the
// site's agents name; the leaf dials the hub and keeps no JetStream; the
// StatefulSet decodes strictly and runs `riptrace server` with real flags.
func TestDeployCluster(t *testing.T) {
	for k, v := range deployPasswords {
		t.Setenv(k, v)
	}
	t.Setenv("NODE_NAME", "riptrace-2")
	t.Setenv("RIPTRACE_LEAF_PASSWORD", "leaf-pw")
	etc := t.TempDir()
	for _, f := range []string{"nats.conf", "cluster/cluster.conf", "cluster/leaf.conf"} {
		data, err := os.ReadFile(filepath.Join(deployDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(etc, filepath.Base(f)), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	hub, err := server.ProcessConfigFile(filepath.Join(etc, "cluster.conf"))
	if err != nil {
		t.Fatalf("loading cluster.conf: %v", err)
	}
	if hub.ServerName != "riptrace-2" || hub.Cluster.Name != "riptrace" || hub.Cluster.Port != 6222 || len(hub.Routes) != 3 {
		t.Errorf("cluster.conf: server %q, cluster %q on port %d with %d routes; want riptrace-2, riptrace on 6222 with 3", hub.ServerName, hub.Cluster.Name, hub.Cluster.Port, len(hub.Routes))
	}
	if hub.LeafNode.Port != 7422 || hub.LeafNode.Password != "leaf-pw" || hub.JetStreamDomain != "hub" || !hub.JetStream {
		t.Errorf("cluster.conf: leaf nodes on %d (password set: %t), JetStream %t in domain %q; want 7422, set, on, hub", hub.LeafNode.Port, hub.LeafNode.Password != "", hub.JetStream, hub.JetStreamDomain)
	}
	if len(hub.Users) == 0 {
		t.Error("cluster.conf lost nats.conf's users")
	}
	leaf, err := server.ProcessConfigFile(filepath.Join(etc, "leaf.conf"))
	if err != nil {
		t.Fatalf("loading leaf.conf: %v", err)
	}
	if leaf.JetStream || len(leaf.LeafNode.Remotes) != 1 || len(leaf.LeafNode.Remotes[0].URLs) != 3 {
		t.Errorf("leaf.conf: JetStream %t, %d remotes; want none and one hub of three URLs", leaf.JetStream, len(leaf.LeafNode.Remotes))
	}

	data, err := os.ReadFile(filepath.Join(deployDir, "cluster", "statefulset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(data), -1) {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			t.Fatalf("document %d: %v", i+1, err)
		}
		kinds[tm.Kind] = true
		switch tm.Kind {
		case "Service":
			var svc corev1.Service
			if err := decodeStrict(doc, &svc); err != nil {
				t.Fatalf("document %d: %v", i+1, err)
			}
			if svc.Spec.ClusterIP != "None" {
				t.Errorf("the Service is not headless: the routes need each pod's own name")
			}
		case "StatefulSet":
			var ss appsv1.StatefulSet
			if err := decodeStrict(doc, &ss); err != nil {
				t.Fatalf("document %d: %v", i+1, err)
			}
			if *ss.Spec.Replicas != 3 {
				t.Errorf("the StatefulSet runs %d servers, want 3", *ss.Spec.Replicas)
			}
			args := ss.Spec.Template.Spec.Containers[0].Args
			if given := checkCommandLine(t, "statefulset.yaml", args); args[0] != "server" || given["config"] == "" {
				t.Errorf("the StatefulSet runs riptrace %v, want server --config", args)
			}
		default:
			t.Errorf("document %d: unexpected kind %q", i+1, tm.Kind)
		}
	}
	if !kinds["Service"] || !kinds["StatefulSet"] {
		t.Errorf("kinds %v, want a Service and a StatefulSet", kinds)
	}
}
