package policy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/cairn-backup/cairn/chunkstore/storage"
	"github.com/cairn-backup/cairn/snapshot"
)

// A policy NAME is the object NAME of kind storage.Policies; its state
// is the object NAME@state of the same kind. '@' is not allowed in
// resource names, so no policy name is another's state object.
const stateSuffix = "@state"

func stateName(name string) string { return name + stateSuffix }

// checkName refuses a name that is not a policy's, as ErrInvalid.
func checkName(name string) error {
	if err := snapshot.CheckName("resource", name); err != nil {
		return invalidf("%w", err)
	}
	return nil
}

// Save stores p as policy p.Name, replacing an older one. It writes out
// p's defaults (SetDefaults, in p) and refuses, before writing anything,
// a p that Check refuses (ErrInvalid) or whose Created is not set.
// Save checks only the definition: the caller runs Validate first, on
// the machine and with the PATH the hooks will run with. The state of
// the policy is left as it is.
func Save(ctx context.Context, st storage.Storage, p *Policy) error {
	p.SetDefaults()
	if err := p.Check(); err != nil {
		return err
	}
	if p.Created.IsZero() {
		return fmt.Errorf("policy %s: no creation time set", p.Name)
	}
	b, err := encodePolicy(p)
	if err != nil {
		return fmt.Errorf("policy %s: %w", p.Name, err)
	}
	return st.Put(ctx, storage.Policies, p.Name, b)
}

// Load reads policy name: ErrNotFound when there is none, ErrDamaged or
// ErrUnsupported when its object fails its checks.
func Load(ctx context.Context, st storage.Storage, name string) (*Policy, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	b, err := st.Get(ctx, storage.Policies, name)
	if errors.Is(err, storage.ErrNotExist) {
		return nil, fmt.Errorf("%w %q", ErrNotFound, name)
	}
	if err != nil {
		return nil, err
	}
	return decodePolicy(name, b)
}

// Bad is a stored policy List could not read.
type Bad struct {
	Name string
	Err  error
}

// List reads every policy, sorted by name. A policy that cannot be read
// (damaged, of an unknown version, unreadable in storage) does not hide
// the others: it is returned in bad, sorted by name, with its error.
// The error is for the listing itself (storage, ctx).
func List(ctx context.Context, st storage.Storage) (policies []*Policy, bad []Bad, err error) {
	var names []string
	err = st.List(ctx, storage.Policies, func(o storage.ObjectInfo) error {
		if !strings.HasSuffix(o.Name, stateSuffix) {
			names = append(names, o.Name)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	slices.Sort(names)
	for _, name := range names {
		if err := checkName(name); err != nil {
			bad = append(bad, Bad{name, fmt.Errorf("object %q of kind %s: %w: not a policy name", name, storage.Policies, ErrDamaged)})
			continue
		}
		b, err := st.Get(ctx, storage.Policies, name)
		if errors.Is(err, storage.ErrNotExist) {
			continue // deleted since it was listed
		}
		if err == nil {
			var p *Policy
			if p, err = decodePolicy(name, b); err == nil {
				policies = append(policies, p)
				continue
			}
		}
		if ctx.Err() != nil {
			return nil, nil, err
		}
		bad = append(bad, Bad{name, err})
	}
	return policies, bad, nil
}

// Delete removes policy name and its state: ErrNotFound when there is no
// such policy. The definition goes first, so a Delete cut short leaves
// at most a state that List does not show and a new policy of the name
// does not trip over (see Due).
func Delete(ctx context.Context, st storage.Storage, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if _, err := st.Stat(ctx, storage.Policies, name); errors.Is(err, storage.ErrNotExist) {
		return fmt.Errorf("%w %q", ErrNotFound, name)
	} else if err != nil {
		return err
	}
	if err := st.Delete(ctx, storage.Policies, name); err != nil {
		return err
	}
	return st.Delete(ctx, storage.Policies, stateName(name))
}

// LoadState reads the state of policy name; a policy that never ran has
// none, and gets the zero State with a nil error. A damaged state is
// ErrDamaged (or ErrUnsupported), with the zero State.
func LoadState(ctx context.Context, st storage.Storage, name string) (State, error) {
	if err := checkName(name); err != nil {
		return State{}, err
	}
	b, err := st.Get(ctx, storage.Policies, stateName(name))
	if errors.Is(err, storage.ErrNotExist) {
		return State{}, nil
	}
	if err != nil {
		return State{}, err
	}
	return decodeState(name, b)
}

// SaveState stores the state of policy name, replacing the older one.
// It does not look at the definition, which may be saved concurrently.
func SaveState(ctx context.Context, st storage.Storage, name string, s State) error {
	if err := checkName(name); err != nil {
		return err
	}
	b, err := encodeState(s)
	if err != nil {
		return fmt.Errorf("state of policy %s: %w", name, err)
	}
	return st.Put(ctx, storage.Policies, stateName(name), b)
}
