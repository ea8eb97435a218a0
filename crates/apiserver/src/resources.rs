//! The one table of served resources. Everything per kind (routes, discovery, OpenAPI, tables,
//! validation) is driven from [`RESOURCES`]; nothing else in the crate names a kind.

use k8s_openapi::api::{apps, autoscaling, coordination, core, discovery, events, networking};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::Value;

/// A subresource a resource serves besides its main endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    /// `/status`: reads and writes only `.status`.
    Status,
    /// `/scale`: an `autoscaling/v1` `Scale` view of `.spec.replicas`.
    Scale,
}

impl Subresource {
    /// The path segment.
    pub fn name(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
        }
    }
}

/// How a table cell is computed from an object.
#[derive(Debug, Clone, Copy)]
pub enum Cell {
    /// A dotted path into the object (`spec.type`); lists are joined with commas.
    Path(&'static str),
    /// An integer at a path, 0 when absent.
    Int(&'static str),
    /// `ready/desired` from two paths.
    Ratio(&'static str, &'static str),
    /// The object's age from `metadata.creationTimestamp`.
    Age,
    /// The number of keys of a map at a path (a ConfigMap's or Secret's `data`).
    Count(&'static str),
    /// Containers ready / total, from a pod's status.
    PodReady,
    /// Restarts summed over a pod's containers.
    PodRestarts,
    /// Ports of a service, `80/TCP,443/TCP`.
    ServicePorts,
    /// The `key=value` pairs of a label selector at a path.
    Selector(&'static str),
    /// Container names, images of a pod template at a path.
    Containers(&'static str, &'static str),
}

/// One column of the `kubectl get` table.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// The header.
    pub name: &'static str,
    /// `string`, `integer`, `date`.
    pub ty: &'static str,
    /// 0 = always shown, 1 = with `-o wide`.
    pub priority: u8,
    /// What the cell holds.
    pub cell: Cell,
}

const fn col(name: &'static str, cell: Cell) -> Column {
    Column {
        name,
        ty: "string",
        priority: 0,
        cell,
    }
}

const fn wide(name: &'static str, cell: Cell) -> Column {
    Column {
        name,
        ty: "string",
        priority: 1,
        cell,
    }
}

/// The description of one served resource.
pub struct ResourceDef {
    /// API group (`""` for core).
    pub group: &'static str,
    /// API version.
    pub version: &'static str,
    /// Kind.
    pub kind: &'static str,
    /// Plural resource name (the path segment).
    pub plural: &'static str,
    /// Singular name.
    pub singular: &'static str,
    /// `kubectl` short names.
    pub short_names: &'static [&'static str],
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Served subresources.
    pub subresources: &'static [Subresource],
    /// Table columns after `NAME`.
    pub columns: &'static [Column],
    /// Storage key segment; two resources with one storage share objects (core/v1 and events.k8s.io/v1
    /// events).
    pub storage: &'static str,
    /// Whether the kind has a `spec` whose changes bump `metadata.generation`.
    pub has_spec: bool,
    /// Decodes an object into the typed struct: the structural check.
    pub decode: fn(&Value) -> Result<(), String>,
    /// Adds the kind's schema to a generator and returns its reference.
    pub schema: fn(&mut SchemaGenerator) -> Schema,
}

impl std::fmt::Debug for ResourceDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.api_version(), self.plural)
    }
}

impl ResourceDef {
    /// `apps/v1` or `v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `deployments.apps` or `pods`, as used in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Whether the resource serves `sub`.
    pub fn has(&self, sub: Subresource) -> bool {
        self.subresources.contains(&sub)
    }

    /// The storage prefix of this resource's objects, with a trailing slash.
    pub fn key_prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("/{}/{}/", self.storage, ns),
            _ => format!("/{}/", self.storage),
        }
    }

    /// The storage key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}{}", self.key_prefix(namespace), name)
    }
}

fn decode<K: serde::de::DeserializeOwned>(v: &Value) -> Result<(), String> {
    serde_json::from_value::<K>(v.clone())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn schema<K: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<K>()
}

const STATUS: &[Subresource] = &[Subresource::Status];
const STATUS_SCALE: &[Subresource] = &[Subresource::Status, Subresource::Scale];
const NONE: &[Subresource] = &[];
const AGE: Column = Column {
    name: "Age",
    ty: "date",
    priority: 0,
    cell: Cell::Age,
};

macro_rules! res {
    ($group:expr, $version:expr, $ty:ty, $kind:expr, $plural:expr, $singular:expr, $short:expr, $ns:expr, $subs:expr, $cols:expr, $spec:expr) => {
        res!(
            $group, $version, $ty, $kind, $plural, $singular, $short, $ns, $subs, $cols, $spec,
            $plural
        )
    };
    ($group:expr, $version:expr, $ty:ty, $kind:expr, $plural:expr, $singular:expr, $short:expr, $ns:expr, $subs:expr, $cols:expr, $spec:expr, $storage:expr) => {
        ResourceDef {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            singular: $singular,
            short_names: $short,
            namespaced: $ns,
            subresources: $subs,
            columns: $cols,
            storage: $storage,
            has_spec: $spec,
            decode: decode::<$ty>,
            schema: schema::<$ty>,
        }
    };
}

/// Every served resource.
pub static RESOURCES: &[ResourceDef] = &[
    res!(
        "",
        "v1",
        core::v1::Namespace,
        "Namespace",
        "namespaces",
        "namespace",
        &["ns"],
        false,
        STATUS,
        &[col("Status", Cell::Path("status.phase")), AGE],
        false
    ),
    res!(
        "",
        "v1",
        core::v1::Pod,
        "Pod",
        "pods",
        "pod",
        &["po"],
        true,
        STATUS,
        &[
            col("Ready", Cell::PodReady),
            col("Status", Cell::Path("status.phase")),
            col("Restarts", Cell::PodRestarts),
            AGE,
            wide("IP", Cell::Path("status.podIP")),
            wide("Node", Cell::Path("spec.nodeName"))
        ],
        true
    ),
    res!(
        "",
        "v1",
        core::v1::Service,
        "Service",
        "services",
        "service",
        &["svc"],
        true,
        STATUS,
        &[
            col("Type", Cell::Path("spec.type")),
            col("Cluster-IP", Cell::Path("spec.clusterIP")),
            col("External-IP", Cell::Path("spec.externalIPs")),
            col("Port(s)", Cell::ServicePorts),
            AGE,
            wide("Selector", Cell::Selector("spec.selector"))
        ],
        true
    ),
    res!(
        "",
        "v1",
        core::v1::Endpoints,
        "Endpoints",
        "endpoints",
        "endpoints",
        &["ep"],
        true,
        NONE,
        &[col("Endpoints", Cell::Path("subsets.addresses.ip")), AGE],
        false
    ),
    res!(
        "",
        "v1",
        core::v1::ConfigMap,
        "ConfigMap",
        "configmaps",
        "configmap",
        &["cm"],
        true,
        NONE,
        &[col("Data", Cell::Count("data")), AGE],
        false
    ),
    res!(
        "",
        "v1",
        core::v1::Secret,
        "Secret",
        "secrets",
        "secret",
        &[],
        true,
        NONE,
        &[
            col("Type", Cell::Path("type")),
            col("Data", Cell::Count("data")),
            AGE
        ],
        false
    ),
    res!(
        "",
        "v1",
        core::v1::Node,
        "Node",
        "nodes",
        "node",
        &["no"],
        false,
        STATUS,
        &[
            col("Status", Cell::Path("status.conditions.type")),
            AGE,
            col("Version", Cell::Path("status.nodeInfo.kubeletVersion"))
        ],
        true
    ),
    res!(
        "",
        "v1",
        core::v1::Event,
        "Event",
        "events",
        "event",
        &["ev"],
        true,
        NONE,
        &[
            col("Type", Cell::Path("type")),
            col("Reason", Cell::Path("reason")),
            col("Object", Cell::Path("involvedObject.name")),
            col("Message", Cell::Path("message"))
        ],
        false
    ),
    res!(
        "",
        "v1",
        core::v1::ServiceAccount,
        "ServiceAccount",
        "serviceaccounts",
        "serviceaccount",
        &["sa"],
        true,
        NONE,
        &[col("Secrets", Cell::Count("secrets")), AGE],
        false
    ),
    res!(
        "",
        "v1",
        core::v1::PersistentVolume,
        "PersistentVolume",
        "persistentvolumes",
        "persistentvolume",
        &["pv"],
        false,
        STATUS,
        &[
            col("Capacity", Cell::Path("spec.capacity.storage")),
            col("Access Modes", Cell::Path("spec.accessModes")),
            col(
                "Reclaim Policy",
                Cell::Path("spec.persistentVolumeReclaimPolicy")
            ),
            col("Status", Cell::Path("status.phase")),
            col("Claim", Cell::Path("spec.claimRef.name")),
            AGE
        ],
        true
    ),
    res!(
        "",
        "v1",
        core::v1::PersistentVolumeClaim,
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        &["pvc"],
        true,
        STATUS,
        &[
            col("Status", Cell::Path("status.phase")),
            col("Volume", Cell::Path("spec.volumeName")),
            col("Capacity", Cell::Path("status.capacity.storage")),
            col("Access Modes", Cell::Path("spec.accessModes")),
            AGE
        ],
        true
    ),
    res!(
        "",
        "v1",
        core::v1::ResourceQuota,
        "ResourceQuota",
        "resourcequotas",
        "resourcequota",
        &["quota"],
        true,
        STATUS,
        &[AGE],
        true
    ),
    res!(
        "apps",
        "v1",
        apps::v1::Deployment,
        "Deployment",
        "deployments",
        "deployment",
        &["deploy"],
        true,
        STATUS_SCALE,
        &[
            col(
                "Ready",
                Cell::Ratio("status.readyReplicas", "spec.replicas")
            ),
            col("Up-To-Date", Cell::Int("status.updatedReplicas")),
            col("Available", Cell::Int("status.availableReplicas")),
            AGE,
            wide("Containers", Cell::Containers("spec.template", "name")),
            wide("Images", Cell::Containers("spec.template", "image")),
            wide("Selector", Cell::Selector("spec.selector.matchLabels"))
        ],
        true
    ),
    res!(
        "apps",
        "v1",
        apps::v1::ReplicaSet,
        "ReplicaSet",
        "replicasets",
        "replicaset",
        &["rs"],
        true,
        STATUS_SCALE,
        &[
            col("Desired", Cell::Int("spec.replicas")),
            col("Current", Cell::Int("status.replicas")),
            col("Ready", Cell::Int("status.readyReplicas")),
            AGE,
            wide("Containers", Cell::Containers("spec.template", "name")),
            wide("Images", Cell::Containers("spec.template", "image"))
        ],
        true
    ),
    res!(
        "apps",
        "v1",
        apps::v1::StatefulSet,
        "StatefulSet",
        "statefulsets",
        "statefulset",
        &["sts"],
        true,
        STATUS_SCALE,
        &[
            col(
                "Ready",
                Cell::Ratio("status.readyReplicas", "spec.replicas")
            ),
            AGE,
            wide("Containers", Cell::Containers("spec.template", "name")),
            wide("Images", Cell::Containers("spec.template", "image"))
        ],
        true
    ),
    res!(
        "apps",
        "v1",
        apps::v1::DaemonSet,
        "DaemonSet",
        "daemonsets",
        "daemonset",
        &["ds"],
        true,
        STATUS,
        &[
            col("Desired", Cell::Int("status.desiredNumberScheduled")),
            col("Current", Cell::Int("status.currentNumberScheduled")),
            col("Ready", Cell::Int("status.numberReady")),
            AGE,
            wide("Containers", Cell::Containers("spec.template", "name")),
            wide("Images", Cell::Containers("spec.template", "image"))
        ],
        true
    ),
    res!(
        "networking.k8s.io",
        "v1",
        networking::v1::Ingress,
        "Ingress",
        "ingresses",
        "ingress",
        &["ing"],
        true,
        STATUS,
        &[
            col("Class", Cell::Path("spec.ingressClassName")),
            col("Hosts", Cell::Path("spec.rules.host")),
            col("Address", Cell::Path("status.loadBalancer.ingress.ip")),
            AGE
        ],
        true
    ),
    res!(
        "coordination.k8s.io",
        "v1",
        coordination::v1::Lease,
        "Lease",
        "leases",
        "lease",
        &[],
        true,
        NONE,
        &[col("Holder", Cell::Path("spec.holderIdentity")), AGE],
        false
    ),
    res!(
        "events.k8s.io",
        "v1",
        events::v1::Event,
        "Event",
        "events",
        "event",
        &["ev"],
        true,
        NONE,
        &[
            col("Type", Cell::Path("type")),
            col("Reason", Cell::Path("reason")),
            col("Object", Cell::Path("regarding.name")),
            col("Message", Cell::Path("note"))
        ],
        false,
        "events"
    ),
    res!(
        "discovery.k8s.io",
        "v1",
        discovery::v1::EndpointSlice,
        "EndpointSlice",
        "endpointslices",
        "endpointslice",
        &[],
        true,
        NONE,
        &[
            col("AddressType", Cell::Path("addressType")),
            col("Ports", Cell::Path("ports.port")),
            col("Endpoints", Cell::Path("endpoints.addresses")),
            AGE
        ],
        false
    ),
    res!(
        "autoscaling",
        "v2",
        autoscaling::v2::HorizontalPodAutoscaler,
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        &["hpa"],
        true,
        STATUS,
        &[
            col("Reference", Cell::Path("spec.scaleTargetRef.name")),
            col("MinPods", Cell::Path("spec.minReplicas")),
            col("MaxPods", Cell::Path("spec.maxReplicas")),
            col("Replicas", Cell::Path("status.currentReplicas")),
            AGE
        ],
        true
    ),
];

/// The resource served at `group`/`version` under `plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceDef> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource of a kind at an `apiVersion` (`apps/v1`).
pub fn find_kind(api_version: &str, kind: &str) -> Option<&'static ResourceDef> {
    RESOURCES
        .iter()
        .find(|r| r.kind == kind && r.api_version() == api_version)
}

/// The served group versions, in order of first appearance: (group, version).
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

/// Whether this resource is the one whose objects are stored (events.k8s.io/v1 events are stored as
/// core/v1 events and converted).
pub fn is_converted_view(def: &ResourceDef) -> bool {
    def.group == "events.k8s.io"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_per_group_version() {
        for (i, a) in RESOURCES.iter().enumerate() {
            for b in &RESOURCES[i + 1..] {
                assert!(
                    !(a.group == b.group && a.version == b.version && a.plural == b.plural),
                    "{}",
                    a.plural
                );
            }
        }
    }

    #[test]
    fn decode_rejects_wrong_types() {
        let d = find("apps", "v1", "deployments").unwrap();
        assert!((d.decode)(&serde_json::json!({"spec": {"replicas": "three"}})).is_err());
        assert!(
            (d.decode)(
                &serde_json::json!({"spec": {"replicas": 3, "selector": {}, "template": {}}})
            )
            .is_ok()
        );
    }
}
