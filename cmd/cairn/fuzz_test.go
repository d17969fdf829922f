package main

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/cairn-backup/cairn/snapshot/policy"
)

// FuzzAPIRequest feeds arbitrary bodies to what the daemon decodes from
// a client before any work starts: a job request, each job kind's params
// and checks, a policy (PUT /v1/policies) and vault settings. Each is
// accepted or refused with an error, never a panic; a refused job is a
// usage error (exit 2) when it is the client's fault.
func FuzzAPIRequest(f *testing.F) {
	kinds := make([]string, 0, len(jobKinds))
	for k := range jobKinds {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	seeds := []string{
		`{"kind":"backup","params":{"resource":"web01","disks":[{"name":"vda","path":"/srv/web01.img"}]}}`,
		`{"resource":"web01","disks":[{"name":"vda","path":"/srv/web01.img"}]}`,
		`{"point":"web01@latest","target":"/tmp/x","force":true}`,
		`{"resources":["web01"],"rules":{"keep_daily":7},"dry_run":true}`,
		`{"points":["web01@20261121T100000Z"]}`,
		`{"policy":"db01"}`,
		`{"name":"db01","sources":[{"path":"/x"}],"schedule":{"every":"6h"},"retention":{"keep_last":3}}`,
		`{"capacity":1099511627776}`,
	}
	for i, s := range seeds {
		f.Add(uint8(i), []byte(s))
	}
	f.Fuzz(func(t *testing.T, kind uint8, body []byte) {
		var req jobRequest
		if decodeStrict(body, &req) == nil {
			if prepare, ok := jobKinds[req.Kind]; ok {
				prepare(nil, req.Params)
			}
		}
		if _, _, err := jobKinds[kinds[int(kind)%len(kinds)]](nil, body); err != nil {
			if code, _ := exitCode(err); code != 2 {
				t.Fatalf("params %q refused with exit %d: %v", body, code, err)
			}
		}
		var p policy.Policy
		if decodeStrict(body, &p) == nil {
			p.Check()
			json.Marshal(p)
		}
		var s vaultSettings
		decodeStrict(body, &s)
	})
}
