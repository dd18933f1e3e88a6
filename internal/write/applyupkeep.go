package write

import (
	"context"
	"fmt"
	"time"

	"github.com/acme/registry-api/internal/model"
)

// UpkeepKind is what the leader's upkeep does to one entry.
type UpkeepKind int

const (
	// KeepAlive rewrites the run_date of an entry that is still kept alive
	// for the pod PodUID.
	KeepAlive UpkeepKind = iota + 1
	// RemovePodGone removes an entry that is still kept alive for the pod
	// PodUID, which is gone.
	RemovePodGone
	// RemoveStale removes an entry whose run_date is still before
	// StaleBefore, or, when Value is set, whose value is still Value.
	RemoveStale
	// KeepVersionAlive rewrites the run_date of a version registration
	// (keepalive "service") whose Service has ready endpoints, so that the
	// Go library's readers, which judge by run_date, see it alive.
	KeepVersionAlive
)

func (k UpkeepKind) String() string {
	switch k {
	case KeepAlive:
		return "keepalive"
	case RemovePodGone:
		return "pod_gone"
	case RemoveStale:
		return "stale"
	case KeepVersionAlive:
		return "version_keepalive"
	default:
		return fmt.Sprintf("UpkeepKind(%d)", int(k))
	}
}

// UpkeepAction is one change the leader decided on from a possibly stale
// LIST. Its condition is checked again on the fresh copy that the write
// replaces, so an entry that changed meanwhile (a heartbeat, a new
// registration under the key) is left alone.
type UpkeepAction struct {
	Kind UpkeepKind
	Key  string
	// PodUID is the pod the entry must still be kept alive for (KeepAlive,
	// RemovePodGone).
	PodUID string
	// StaleBefore is the run_date the entry must still be older than
	// (RemoveStale).
	StaleBefore time.Time
	// Value, when set, is the entry's value as the leader judged it: its
	// run_date was ahead of the clock, so the entry counts as dead from when
	// its value was last seen to change, and it is removed only while its
	// value is exactly this (RemoveStale). A changed value is a heartbeat.
	Value string
}

// UpkeepOutcome is an action that was applied, with what the entry said.
type UpkeepOutcome struct {
	UpkeepAction
	AppID   string
	LeaseID int64
	// RunDate is the entry's run_date before the action; zero if unreadable.
	RunDate time.Time
}

// ApplyUpkeep applies actions to the registry ConfigMap of env in namespace in one
// read-modify-write, retried on conflict like every write. It returns the
// actions applied; those whose condition no longer held on the fresh copy are
// skipped. A missing ConfigMap has nothing to keep up. ctx bounds the whole
// call, so a leader that loses its lease abandons the write at once.
func (w *Writer) ApplyUpkeep(ctx context.Context, namespace, env string, actions []UpkeepAction) ([]UpkeepOutcome, error) {
	if len(actions) == 0 {
		return nil, nil
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil, Classify(errClosed)
	}
	w.wg.Add(1)
	w.mu.Unlock()
	defer w.wg.Done()

	r := newRef(namespace, env)
	var applied []UpkeepOutcome
	_, _, err := w.readModifyWrite(ctx, r, false, func(ap *applier) {
		applied = nil
		for _, act := range actions {
			if out, ok := ap.upkeep(act); ok {
				applied = append(applied, out)
			}
		}
	})
	if err != nil {
		w.m.ops.WithLabelValues("upkeep", string(model.ErrorCode(Classify(err)))).Inc()
		return nil, fmt.Errorf("upkeep of registry ConfigMap %s in namespace %s: %w", r.name, r.namespace, err)
	}
	w.m.ops.WithLabelValues("upkeep", "ok").Inc()
	return applied, nil
}

// upkeep applies act to the fresh copy if its condition still holds.
func (a *applier) upkeep(act UpkeepAction) (UpkeepOutcome, bool) {
	raw, ok := a.data[act.Key]
	if !ok {
		return UpkeepOutcome{}, false
	}
	facts, ok := model.ReadEntryFacts([]byte(raw))
	if !ok {
		return UpkeepOutcome{}, false
	}
	runDate := facts.RunDate(a.zone)
	out := UpkeepOutcome{UpkeepAction: act, AppID: facts.AppID, LeaseID: facts.LeaseID, RunDate: runDate}
	switch act.Kind {
	case KeepAlive:
		if !facts.BoundTo(act.PodUID) {
			return UpkeepOutcome{}, false
		}
		fresh, ok := model.RefreshEntry(raw, a.runDate)
		if !ok {
			return UpkeepOutcome{}, false
		}
		// As for heartbeats: refreshing an entry readers skip keeps nothing alive.
		if _, _, err := model.ParseEntry(a.ref.namespace, a.ref.env, act.Key, []byte(fresh), model.ParseOptions{Zone: a.zone}); err != nil {
			return UpkeepOutcome{}, false
		}
		a.set(act.Key, fresh, true)
	case KeepVersionAlive:
		if own, err := facts.Ownership(); err != nil || !own.ServiceKept() {
			return UpkeepOutcome{}, false
		}
		fresh, ok := model.RefreshEntry(raw, a.runDate)
		if !ok {
			return UpkeepOutcome{}, false
		}
		a.set(act.Key, fresh, true)
	case RemovePodGone:
		if !facts.BoundTo(act.PodUID) {
			return UpkeepOutcome{}, false
		}
		a.del(act.Key)
	case RemoveStale:
		if act.Value != "" {
			if raw != act.Value {
				return UpkeepOutcome{}, false
			}
		} else if runDate.IsZero() || act.StaleBefore.IsZero() || !runDate.Before(act.StaleBefore) {
			return UpkeepOutcome{}, false
		}
		a.del(act.Key)
	default:
		return UpkeepOutcome{}, false
	}
	return out, true
}
