// A client of registry-api as a TypeScript gateway writes it: types generated
// from openapi.yaml with openapi-typescript, calls made with openapi-fetch.
// `make lint-client` compiles it with --strict; it is never run. Each line
// uses a part of the contract that a generator once typed unusably.
import createClient from "openapi-fetch";
import type { components, paths } from "./schema";

const client = createClient<paths>({ baseUrl: "http://localhost:8080" });

export async function follow(): Promise<void> {
  // Lease ids exceed 2^53: they are strings in paths as in bodies.
  const lease: components["schemas"]["LeaseID"] = "9007199254740993";
  const beat = await client.PUT("/v1/envs/{env}/apps/{appId}/instances/{leaseId}/heartbeat", {
    params: { path: { env: "prod", appId: "user-service", leaseId: lease } },
  });
  if (beat.error) console.log(beat.error.code, beat.error.detail);
  else console.log(beat.data.lease_id.length, beat.data.run_date);

  const registered = await client.POST("/v1/envs/{env}/apps/{appId}/instances", {
    params: { path: { env: "prod", appId: "inventory-service" } },
    body: {
      lease_id: lease,
      version: "v1",
      network: { internal: "inventory-service:9000" },
      methods: ["/acme.inventory.v1.InventoryService/GetStock"],
      keepalive: "client",
    },
  });
  console.log(registered.data?.instance.alive);

  // Exported objects are told apart by kind, each with its spec's members.
  const istio = await client.GET("/v1/envs/{env}/export/istio", { params: { path: { env: "prod" } } });
  for (const item of istio.data?.items ?? []) {
    switch (item.kind) {
      case "VirtualService":
        console.log(item.spec.hosts.join(","), item.spec.http.map((h) => h.route[0]?.destination.port.number));
        break;
      case "DestinationRule":
        console.log(item.spec.host, item.spec.subsets?.map((s) => s.labels["version"]));
        break;
      case "GRPCRoute":
        console.log(item.spec.rules.map((r) => r.matches.map((m) => m.method.service)));
        break;
      case "ReferenceGrant":
        console.log(item.spec.to.map((t) => t.name));
        break;
    }
  }

  // A resolve result holds a resolution or an error, each typed.
  const resolved = await client.POST("/v1/envs/{env}/resolve", {
    params: { path: { env: "prod" } },
    body: { methods: ["/acme.user.v1.UserService/Login"] },
  });
  for (const r of resolved.data?.results ?? []) {
    console.log(r.method, r.resolution?.app_id, r.error?.code);
  }

  const routes = await client.GET("/v1/envs/{env}/routes", { params: { path: { env: "prod" }, query: { version: "v2" } } });
  for (const route of routes.data?.routes ?? []) {
    console.log(route.method, route.app_id, route.targets.map((t) => `${t.internal} ${t.instances}`));
  }
}
