package main

import (
	"net/http"

	"github.com/cairn-backup/cairn/snapshot/policy"
)

// The policy endpoints: the same compute halves as cairn policy without
// a daemon (cmd_policy.go), plus a word to the scheduler when a policy
// changes.

func (d *daemon) getPolicies(r *http.Request) (any, error) {
	return listPolicies(r.Context(), d.vault)
}

func (d *daemon) getPolicy(r *http.Request) (any, error) {
	return showPolicy(r.Context(), d.vault, r.PathValue("name"))
}

func (d *daemon) putPolicy(r *http.Request) (any, error) {
	var p policy.Policy
	if err := readBody(r, &p); err != nil {
		return nil, err
	}
	if p.Name != r.PathValue("name") {
		return nil, usagef("the policy in the body is %q, the path names %q", p.Name, r.PathValue("name"))
	}
	pv, err := setPolicy(r.Context(), d.vault, &p)
	if err == nil {
		d.log.Printf("policy %s set for a client: %s", p.Name, pv.Schedule)
		d.policiesChanged()
	}
	return pv, err
}

func (d *daemon) deletePolicy(r *http.Request) (any, error) {
	rv, err := removePolicy(r.Context(), d.vault, r.PathValue("name"))
	if err == nil {
		d.log.Printf("policy %s removed for a client", rv.Removed)
		d.policiesChanged()
	}
	return rv, err
}

// policiesChanged has the scheduler look at the policies again now.
func (d *daemon) policiesChanged() {
	if d.sched != nil {
		d.sched.changed()
	}
}
