package fleet

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// createPatterns are the subjects of creating the stream and buckets, which
// only the server's own user may do.
var createPatterns = []string{"$JS.API.STREAM.CREATE.>", "$JS.API.STREAM.UPDATE.>"}

// openResources creates or updates the hit stream and the buckets, as
// ensureResources does; a user whom the permission layout does not let
// create them (every role but the server's) binds the existing ones instead.
func openResources(ctx context.Context, js jetstream.JetStream, subj Subjects, w *permWatch, replicas int) (tps, status, hosts jetstream.KeyValue, err error) {
	cctx, release := w.watch(ctx, true, true, createPatterns)
	// A refused inbox fails at once: no reply, even a refusal, could come.
	ictx, irelease := w.guard(cctx, w.replies())
	tps, status, hosts, err = ensureResources(ictx, js, subj, replicas)
	irelease()
	release()
	var pe *PermissionError
	if err == nil || !errors.As(context.Cause(ictx), &pe) {
		return tps, status, hosts, err
	}
	if pe.Op == "subscribe" {
		return nil, nil, nil, fmt.Errorf("opening the hit stream and buckets: %w", pe)
	}
	gctx, release := w.guard(ctx, w.jsPatterns()...)
	defer release()
	if _, err := js.Stream(gctx, subj.HitStream()); err != nil {
		return nil, nil, nil, bindError(gctx, "the hit stream "+subj.HitStream(), err)
	}
	kvs := make([]jetstream.KeyValue, 3)
	for i, bucket := range []string{subj.TracepointBucket(), subj.StatusBucket(), subj.HostBucket()} {
		if kvs[i], err = js.KeyValue(gctx, bucket); err != nil {
			return nil, nil, nil, bindError(gctx, "the bucket "+bucket, err)
		}
	}
	return kvs[0], kvs[1], kvs[2], nil
}

func bindError(ctx context.Context, what string, err error) error {
	if errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrBucketNotFound) {
		return fmt.Errorf("looking up %s: it does not exist, and this user may not create it: connect once as a user who may (`riptrace server` does so itself unless its config is in operator mode)", what)
	}
	return fmt.Errorf("looking up %s: %w", what, denied(ctx, err))
}
