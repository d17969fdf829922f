package snapshot

import (
	"fmt"
)

// PruneReport says what Prune decided for each point.
type PruneReport struct {
	DryRun    bool          `json:"dry_run"`
	Rules     string        `json:"rules"`
	Resources []PrunedChain `json:"resources"`
	Removed   int           `json:"removed"`
	Kept      int           `json:"kept"`
}

// PrunedChain is the decisions for one resource, newest first.
type PrunedChain struct {
	Resource  string     `json:"resource"`
	Decisions []Decision `json:"points"`
}

// Prune applies rules to each of resources (all when none is given):
// it deletes the points the rules do not keep, never a resource's newest
// point, a pinned one nor one in use (Use), which is kept for the reason
// its user gave. With dryRun it only reports. The space of the
// blocks only removed points used is freed by GC.
func (v *Vault) Prune(resources []string, rules Rules, dryRun bool) (*PruneReport, error) {
	if err := rules.Check(); err != nil {
		return nil, err
	}
	if len(resources) == 0 {
		var err error
		if resources, err = v.Resources(); err != nil {
			return nil, err
		}
	}
	rep := &PruneReport{DryRun: dryRun, Rules: rules.String(), Resources: []PrunedChain{}}
	var remove []*Point
	for _, r := range resources {
		if err := CheckName("resource", r); err != nil {
			return nil, err
		}
		points, err := v.Points(r)
		if err != nil {
			return nil, err
		}
		if len(points) == 0 {
			return nil, fmt.Errorf("%w: resource %q has no points", ErrNoPoint, r)
		}
		ds := rules.Apply(points)
		for i, d := range ds {
			if why := v.fence.inUse(d.Name); !d.Keep && why != "" {
				d.Keep, d.Reasons = true, append(d.Reasons, why)
				ds[i] = d
			}
			if d.Keep {
				rep.Kept++
			} else {
				rep.Removed++
				remove = append(remove, d.Point)
			}
		}
		rep.Resources = append(rep.Resources, PrunedChain{Resource: r, Decisions: ds})
	}
	if dryRun || len(remove) == 0 {
		return rep, nil
	}
	return rep, v.Delete(remove)
}
