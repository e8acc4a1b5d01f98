// Our argocd-cm patch through Argo CD's own code, the way a user's Argo CD runs it. Copied into a
// copy of Argo CD's module (github.com/argoproj/argo-cd/v3, package strategyrollouts/) and run by
// tests/argocd/test_argocd_runtime.py; SR_CM_PATCH names our patch, SR_CASES the cases that
// tests/argocd/layout.py wrote from tests/fixtures/argocd/ (engine-made objects and expectations).
//
//   - settings: the patch is Argo CD's argocd-cm, parsed by util/settings.SettingsManager
//     (over a fake clientset: the input of Argo CD's settings parser, not our cluster)
//   - health as the application controller computes it: gitops-engine health.GetResourceHealth with
//     lua.ResourceHealthOverrides (controller/health.go)
//   - actions as the API server runs them (server/application RunResourceActionV2): discovery,
//     GetResourceAction, ExecuteResourceAction (no standard libraries), then the JSON merge patch
//     between the live object and the result, which Argo CD sends to the status subresource when
//     its only key is "status".
package strategyrollouts

import (
	"context"
	"encoding/json"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/argoproj/gitops-engine/pkg/health"
	jsonpatch "github.com/evanphx/json-patch"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/yaml"

	"github.com/argoproj/argo-cd/v3/pkg/apis/application/v1alpha1"
	"github.com/argoproj/argo-cd/v3/util/lua"
	"github.com/argoproj/argo-cd/v3/util/settings"
)

const namespace = "argocd"

type testCase struct {
	Name   string         `json:"name"`
	Object map[string]any `json:"object"`
	Health struct {
		Status          health.HealthStatusCode `json:"status"`
		MessageContains string                  `json:"messageContains"`
	} `json:"health"`
	Actions  []string                     `json:"actions"`
	Enabled  []string                     `json:"enabled"`
	Requests map[string]map[string]string `json:"requests"`
}

type cases struct {
	Group           string     `json:"group"`
	Kinds           []string   `json:"kinds"`
	ActionKinds     []string   `json:"actionKinds"`
	ResourceVersion string     `json:"resourceVersion"`
	Cases           []testCase `json:"cases"`
}

func load(t *testing.T) (cases, map[string]v1alpha1.ResourceOverride, *corev1.ConfigMap) {
	t.Helper()
	raw, err := os.ReadFile(os.Getenv("SR_CASES"))
	require.NoError(t, err, "SR_CASES")
	var c cases
	require.NoError(t, json.Unmarshal(raw, &c))
	require.NotEmpty(t, c.Cases)

	patch, err := os.ReadFile(os.Getenv("SR_CM_PATCH"))
	require.NoError(t, err, "SR_CM_PATCH")
	var cm corev1.ConfigMap
	require.NoError(t, yaml.Unmarshal(patch, &cm))
	cm.Namespace = namespace
	mgr := settings.NewSettingsManager(context.Background(), fake.NewClientset(&cm), namespace)
	overrides, err := mgr.GetResourceOverrides()
	require.NoError(t, err)
	return c, overrides, &cm
}

func object(t *testing.T, c testCase, resourceVersion string) *unstructured.Unstructured {
	t.Helper()
	raw, err := json.Marshal(c.Object) // a deep copy per use
	require.NoError(t, err)
	obj := &unstructured.Unstructured{}
	require.NoError(t, obj.UnmarshalJSON(raw))
	if resourceVersion != "" {
		obj.SetResourceVersion(resourceVersion)
	}
	return obj
}

// The settings parser sees our keys, and the scripts Argo CD would run are the ones in the patch
// (not a built-in of the same name: the module copy also carries them under resource_customizations/).
func TestArgoCDConfigMapOverrides(t *testing.T) {
	c, overrides, cm := load(t)
	for _, kind := range c.Kinds {
		key := c.Group + "/" + kind
		o, ok := overrides[key]
		require.True(t, ok, "no resource override %s", key)
		assert.Equal(t, cm.Data["resource.customizations.health."+c.Group+"_"+kind], o.HealthLua)
		assert.True(t, o.UseOpenLibs, "%s: useOpenLibs", key)
	}
	for _, kind := range c.ActionKinds {
		o := overrides[c.Group+"/"+kind]
		actions, err := o.GetActions()
		require.NoError(t, err)
		assert.False(t, actions.MergeBuiltinActions)
		assert.NotEmpty(t, actions.ActionDiscoveryLua)
	}
	for _, tc := range c.Cases {
		obj := object(t, tc, "")
		script, openLibs, err := lua.VM{ResourceOverrides: overrides}.GetHealthScript(obj)
		require.NoError(t, err)
		assert.Equal(t, overrides[c.Group+"/"+obj.GetKind()].HealthLua, script)
		assert.True(t, openLibs)
	}
}

// Health of every fixture as the application controller computes it.
func TestArgoCDControllerHealth(t *testing.T) {
	c, overrides, _ := load(t)
	healthOverrides := lua.ResourceHealthOverrides(overrides)
	for _, tc := range c.Cases {
		t.Run(tc.Name, func(t *testing.T) {
			hs, err := health.GetResourceHealth(object(t, tc, ""), healthOverrides)
			require.NoError(t, err)
			require.NotNil(t, hs)
			assert.Equal(t, tc.Health.Status, hs.Status, hs.Message)
			assert.Contains(t, hs.Message, tc.Health.MessageContains)
		})
	}
}

// Without useOpenLibs the same scripts fail (string.format is nil): the key in the patch is what
// makes them work, so dropping it must fail a test.
func TestArgoCDHealthNeedsOpenLibs(t *testing.T) {
	c, overrides, _ := load(t)
	closed := map[string]v1alpha1.ResourceOverride{}
	for k, o := range overrides {
		o.UseOpenLibs = false
		closed[k] = o
	}
	failed := 0
	for _, tc := range c.Cases {
		if _, err := health.GetResourceHealth(object(t, tc, ""), lua.ResourceHealthOverrides(closed)); err != nil {
			failed++
		}
	}
	assert.Positive(t, failed)
}

// Every action discovery enables runs as the API server runs it and patches only status: one new
// request, another writer's pending request and the rest of status untouched, `at` in UTC now.
func TestArgoCDServerActions(t *testing.T) {
	c, overrides, _ := load(t)
	vm := lua.VM{ResourceOverrides: overrides} // no UseOpenLibs: the API server runs actions without them
	ran := 0
	for _, tc := range c.Cases {
		if len(tc.Actions) == 0 {
			continue
		}
		t.Run(tc.Name, func(t *testing.T) {
			live := object(t, tc, c.ResourceVersion)
			foreign := map[string]any{"action": "pause", "by": "bob", "at": "2026-01-05T06:00:00Z"}
			require.NoError(t, unstructured.SetNestedField(live.Object, foreign, "status", "requests", "someone"))

			scripts, err := vm.GetResourceActionDiscovery(live)
			require.NoError(t, err)
			require.Len(t, scripts, 1, "only our discovery, no built-in one")
			available, err := vm.ExecuteResourceActionDiscovery(live, scripts)
			require.NoError(t, err)
			var names, enabled []string
			for _, a := range available {
				names = append(names, a.Name)
				if !a.Disabled {
					enabled = append(enabled, a.Name)
				}
			}
			sort.Strings(names)
			sort.Strings(enabled)
			assert.Equal(t, tc.Actions, names)
			assert.Equal(t, tc.Enabled, nonNil(enabled))

			for _, name := range enabled {
				t.Run(name, func(t *testing.T) {
					ran++
					runAction(t, vm, live, name, "argocd-"+c.ResourceVersion+"-"+name, tc.Requests[name], foreign)
				})
			}
		})
	}
	assert.Positive(t, ran)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func runAction(t *testing.T, vm lua.VM, live *unstructured.Unstructured, name, id string, want map[string]string, foreign map[string]any) {
	t.Helper()
	action, err := vm.GetResourceAction(live, name)
	require.NoError(t, err)
	impacted, err := vm.ExecuteResourceAction(live.DeepCopy(), action.ActionLua, nil)
	require.NoError(t, err)
	require.Len(t, impacted, 1)
	assert.Equal(t, lua.PatchOperation, impacted[0].K8SOperation)

	liveBytes, err := json.Marshal(live)
	require.NoError(t, err)
	newBytes, err := json.Marshal(impacted[0].UnstructuredObj)
	require.NoError(t, err)
	patchBytes, err := jsonpatch.CreateMergePatch(liveBytes, newBytes)
	require.NoError(t, err)
	var patch map[string]any
	require.NoError(t, json.Unmarshal(patchBytes, &patch))
	// {"status": {"requests": {<id>: {...}}}} and nothing else: a status-subresource-only patch.
	require.Equal(t, []string{"status"}, keys(patch), string(patchBytes))
	status := patch["status"].(map[string]any)
	require.Equal(t, []string{"requests"}, keys(status), string(patchBytes))
	requests := status["requests"].(map[string]any)
	require.Equal(t, []string{id}, keys(requests), string(patchBytes))
	request := requests[id].(map[string]any)
	for k, v := range want {
		assert.Equal(t, v, request[k], k)
	}
	at, err := time.Parse(time.RFC3339, request["at"].(string))
	require.NoError(t, err)
	assert.True(t, strings.HasSuffix(request["at"].(string), "Z"))
	assert.WithinDuration(t, time.Now().UTC(), at, time.Minute, "at is UTC now")
	assert.Len(t, request, len(want)+1, "action, by, reason, at")

	// Applied to the live object (as the API server's merge patch is), the other request stays.
	merged, err := jsonpatch.MergePatch(liveBytes, patchBytes)
	require.NoError(t, err)
	after := &unstructured.Unstructured{}
	require.NoError(t, after.UnmarshalJSON(merged))
	kept, found, err := unstructured.NestedMap(after.Object, "status", "requests", "someone")
	require.NoError(t, err)
	require.True(t, found)
	assert.Equal(t, foreign, kept)
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
