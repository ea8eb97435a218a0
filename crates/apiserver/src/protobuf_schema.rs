//! Field tables of the built-in kinds whose protobuf bodies [`crate::protobuf`] decodes: the field
//! numbers of Kubernetes' `generated.proto` files for `k8s.io/api` core/v1 and apps/v1 and
//! `k8s.io/apimachinery` meta/v1, for the fields that kubectl's generator commands and ordinary
//! manifests of these kinds set. A field missing here is refused when it carries a value.

/// How a field's value is encoded and turned into JSON.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A string.
    Str,
    /// Bytes, base64 in JSON.
    Bytes,
    /// An int32 or int64.
    Int,
    /// A bool.
    Bool,
    /// A nested message.
    Message(&'static Message),
    /// `map<string, V>`.
    Map(&'static Kind),
    /// `metav1.Time`.
    Time,
    /// `resource.Quantity`.
    Quantity,
    /// `intstr.IntOrString`.
    IntOrString,
}

/// One field of a message.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// The protobuf field number.
    pub number: u32,
    /// The JSON name.
    pub name: &'static str,
    /// The encoding.
    pub kind: Kind,
    /// A repeated field (a JSON list).
    pub repeated: bool,
    /// A Go pointer field: present means set, so a zero value is kept.
    pub pointer: bool,
}

/// A message type.
#[derive(Debug)]
pub struct Message {
    /// The Go type name, for errors.
    pub name: &'static str,
    /// Its known fields.
    pub fields: &'static [Field],
}

const fn f(number: u32, name: &'static str, kind: Kind) -> Field {
    Field {
        number,
        name,
        kind,
        repeated: false,
        pointer: false,
    }
}

const fn ptr(number: u32, name: &'static str, kind: Kind) -> Field {
    Field {
        pointer: true,
        ..f(number, name, kind)
    }
}

const fn rep(number: u32, name: &'static str, kind: Kind) -> Field {
    Field {
        repeated: true,
        ..f(number, name, kind)
    }
}

use Kind::{Bool, Bytes, Int, IntOrString, Quantity, Str, Time};

const STRINGS: Kind = Kind::Map(&Str);
const BYTES: Kind = Kind::Map(&Bytes);
const QUANTITIES: Kind = Kind::Map(&Quantity);

static OWNER_REFERENCE: Message = Message {
    name: "OwnerReference",
    fields: &[
        f(1, "kind", Str),
        f(3, "name", Str),
        f(4, "uid", Str),
        f(5, "apiVersion", Str),
        ptr(6, "controller", Bool),
        ptr(7, "blockOwnerDeletion", Bool),
    ],
};

static OBJECT_META: Message = Message {
    name: "ObjectMeta",
    fields: &[
        f(1, "name", Str),
        f(2, "generateName", Str),
        f(3, "namespace", Str),
        f(4, "selfLink", Str),
        f(5, "uid", Str),
        f(6, "resourceVersion", Str),
        f(7, "generation", Int),
        f(8, "creationTimestamp", Time),
        ptr(9, "deletionTimestamp", Time),
        ptr(10, "deletionGracePeriodSeconds", Int),
        f(11, "labels", STRINGS),
        f(12, "annotations", STRINGS),
        rep(13, "ownerReferences", Kind::Message(&OWNER_REFERENCE)),
        rep(14, "finalizers", Str),
    ],
};

static LOCAL_OBJECT_REFERENCE: Message = Message {
    name: "LocalObjectReference",
    fields: &[f(1, "name", Str)],
};

static OBJECT_REFERENCE: Message = Message {
    name: "ObjectReference",
    fields: &[
        f(1, "kind", Str),
        f(2, "namespace", Str),
        f(3, "name", Str),
        f(4, "uid", Str),
        f(5, "apiVersion", Str),
        f(6, "resourceVersion", Str),
        f(7, "fieldPath", Str),
    ],
};

static CONFIG_MAP: Message = Message {
    name: "ConfigMap",
    fields: &[
        f(1, "metadata", Kind::Message(&OBJECT_META)),
        f(2, "data", STRINGS),
        f(3, "binaryData", BYTES),
        ptr(4, "immutable", Bool),
    ],
};

static SECRET: Message = Message {
    name: "Secret",
    fields: &[
        f(1, "metadata", Kind::Message(&OBJECT_META)),
        f(2, "data", BYTES),
        f(3, "type", Str),
        f(4, "stringData", STRINGS),
        ptr(5, "immutable", Bool),
    ],
};

static NAMESPACE_SPEC: Message = Message {
    name: "NamespaceSpec",
    fields: &[rep(1, "finalizers", Str)],
};

static NAMESPACE_STATUS: Message = Message {
    name: "NamespaceStatus",
    fields: &[f(1, "phase", Str)],
};

static NAMESPACE: Message = Message {
    name: "Namespace",
    fields: &[
        f(1, "metadata", Kind::Message(&OBJECT_META)),
        f(2, "spec", Kind::Message(&NAMESPACE_SPEC)),
        f(3, "status", Kind::Message(&NAMESPACE_STATUS)),
    ],
};

static SERVICE_ACCOUNT: Message = Message {
    name: "ServiceAccount",
    fields: &[
        f(1, "metadata", Kind::Message(&OBJECT_META)),
        rep(2, "secrets", Kind::Message(&OBJECT_REFERENCE)),
        rep(
            3,
            "imagePullSecrets",
            Kind::Message(&LOCAL_OBJECT_REFERENCE),
        ),
        ptr(4, "automountServiceAccountToken", Bool),
    ],
};

static RESOURCE_QUOTA_SPEC: Message = Message {
    name: "ResourceQuotaSpec",
    fields: &[f(1, "hard", QUANTITIES), rep(2, "scopes", Str)],
};

static RESOURCE_QUOTA_STATUS: Message = Message {
    name: "ResourceQuotaStatus",
    fields: &[f(1, "hard", QUANTITIES), f(2, "used", QUANTITIES)],
};

static RESOURCE_QUOTA: Message = Message {
    name: "ResourceQuota",
    fields: &[
        f(1, "metadata", Kind::Message(&OBJECT_META)),
        f(2, "spec", Kind::Message(&RESOURCE_QUOTA_SPEC)),
        f(3, "status", Kind::Message(&RESOURCE_QUOTA_STATUS)),
    ],
};

static SERVICE_PORT: Message = Message {
    name: "ServicePort",
    fields: &[
        f(1, "name", Str),
        f(2, "protocol", Str),
        f(3, "port", Int),
        f(4, "targetPort", IntOrString),
        f(5, "nodePort", Int),
        ptr(6, "appProtocol", Str),
    ],
};

static SERVICE_SPEC: Message = Message {
    name: "ServiceSpec",
    fields: &[
        rep(1, "ports", Kind::Message(&SERVICE_PORT)),
        f(2, "selector", STRINGS),
        f(3, "clusterIP", Str),
        f(4, "type", Str),
        rep(5, "externalIPs", Str),
        f(7, "sessionAffinity", Str),
        f(8, "loadBalancerIP", Str),
        rep(9, "loadBalancerSourceRanges", Str),
        f(10, "externalName", Str),
        f(11, "externalTrafficPolicy", Str),
        f(12, "healthCheckNodePort", Int),
        f(13, "publishNotReadyAddresses", Bool),
        ptr(17, "ipFamilyPolicy", Str),
        rep(18, "clusterIPs", Str),
        rep(19, "ipFamilies", Str),
        ptr(20, "allocateLoadBalancerNodePorts", Bool),
        ptr(21, "loadBalancerClass", Str),
        ptr(22, "internalTrafficPolicy", Str),
    ],
};

static LOAD_BALANCER_STATUS: Message = Message {
    name: "LoadBalancerStatus",
    fields: &[],
};

static SERVICE_STATUS: Message = Message {
    name: "ServiceStatus",
    fields: &[f(1, "loadBalancer", Kind::Message(&LOAD_BALANCER_STATUS))],
};

static SERVICE: Message = Message {
    name: "Service",
    fields: &[
        f(1, "metadata", Kind::Message(&OBJECT_META)),
        f(2, "spec", Kind::Message(&SERVICE_SPEC)),
        f(3, "status", Kind::Message(&SERVICE_STATUS)),
    ],
};

static CONTAINER_PORT: Message = Message {
    name: "ContainerPort",
    fields: &[
        f(1, "name", Str),
        f(2, "hostPort", Int),
        f(3, "containerPort", Int),
        f(4, "protocol", Str),
        f(5, "hostIP", Str),
    ],
};

static ENV_VAR: Message = Message {
    name: "EnvVar",
    fields: &[f(1, "name", Str), f(2, "value", Str)],
};

static RESOURCE_REQUIREMENTS: Message = Message {
    name: "ResourceRequirements",
    fields: &[f(1, "limits", QUANTITIES), f(2, "requests", QUANTITIES)],
};

static CONTAINER: Message = Message {
    name: "Container",
    fields: &[
        f(1, "name", Str),
        f(2, "image", Str),
        rep(3, "command", Str),
        rep(4, "args", Str),
        f(5, "workingDir", Str),
        rep(6, "ports", Kind::Message(&CONTAINER_PORT)),
        rep(7, "env", Kind::Message(&ENV_VAR)),
        f(8, "resources", Kind::Message(&RESOURCE_REQUIREMENTS)),
        f(13, "terminationMessagePath", Str),
        f(14, "imagePullPolicy", Str),
        f(16, "stdin", Bool),
        f(17, "stdinOnce", Bool),
        f(18, "tty", Bool),
        f(20, "terminationMessagePolicy", Str),
        ptr(24, "restartPolicy", Str),
    ],
};

static POD_SPEC: Message = Message {
    name: "PodSpec",
    fields: &[
        rep(2, "containers", Kind::Message(&CONTAINER)),
        f(3, "restartPolicy", Str),
        ptr(4, "terminationGracePeriodSeconds", Int),
        ptr(5, "activeDeadlineSeconds", Int),
        f(6, "dnsPolicy", Str),
        f(7, "nodeSelector", STRINGS),
        f(8, "serviceAccountName", Str),
        f(9, "serviceAccount", Str),
        f(10, "nodeName", Str),
        f(11, "hostNetwork", Bool),
        f(12, "hostPID", Bool),
        f(13, "hostIPC", Bool),
        rep(
            15,
            "imagePullSecrets",
            Kind::Message(&LOCAL_OBJECT_REFERENCE),
        ),
        f(16, "hostname", Str),
        f(17, "subdomain", Str),
        f(19, "schedulerName", Str),
        rep(20, "initContainers", Kind::Message(&CONTAINER)),
        ptr(21, "automountServiceAccountToken", Bool),
        f(24, "priorityClassName", Str),
        ptr(25, "priority", Int),
        ptr(30, "enableServiceLinks", Bool),
        ptr(31, "preemptionPolicy", Str),
        ptr(35, "setHostnameAsFQDN", Bool),
        ptr(37, "hostUsers", Bool),
    ],
};

static POD_TEMPLATE_SPEC: Message = Message {
    name: "PodTemplateSpec",
    fields: &[
        f(1, "metadata", Kind::Message(&OBJECT_META)),
        f(2, "spec", Kind::Message(&POD_SPEC)),
    ],
};

static LABEL_SELECTOR_REQUIREMENT: Message = Message {
    name: "LabelSelectorRequirement",
    fields: &[
        f(1, "key", Str),
        f(2, "operator", Str),
        rep(3, "values", Str),
    ],
};

static LABEL_SELECTOR: Message = Message {
    name: "LabelSelector",
    fields: &[
        f(1, "matchLabels", STRINGS),
        rep(
            2,
            "matchExpressions",
            Kind::Message(&LABEL_SELECTOR_REQUIREMENT),
        ),
    ],
};

static ROLLING_UPDATE_DEPLOYMENT: Message = Message {
    name: "RollingUpdateDeployment",
    fields: &[
        ptr(1, "maxUnavailable", IntOrString),
        ptr(2, "maxSurge", IntOrString),
    ],
};

static DEPLOYMENT_STRATEGY: Message = Message {
    name: "DeploymentStrategy",
    fields: &[
        f(1, "type", Str),
        ptr(
            2,
            "rollingUpdate",
            Kind::Message(&ROLLING_UPDATE_DEPLOYMENT),
        ),
    ],
};

static DEPLOYMENT_SPEC: Message = Message {
    name: "DeploymentSpec",
    fields: &[
        ptr(1, "replicas", Int),
        ptr(2, "selector", Kind::Message(&LABEL_SELECTOR)),
        f(3, "template", Kind::Message(&POD_TEMPLATE_SPEC)),
        f(4, "strategy", Kind::Message(&DEPLOYMENT_STRATEGY)),
        f(5, "minReadySeconds", Int),
        ptr(6, "revisionHistoryLimit", Int),
        f(7, "paused", Bool),
        ptr(9, "progressDeadlineSeconds", Int),
    ],
};

/// A create carries a zero status; its fields are all plain integers and conditions.
static DEPLOYMENT_STATUS: Message = Message {
    name: "DeploymentStatus",
    fields: &[],
};

static DEPLOYMENT: Message = Message {
    name: "Deployment",
    fields: &[
        f(1, "metadata", Kind::Message(&OBJECT_META)),
        f(2, "spec", Kind::Message(&DEPLOYMENT_SPEC)),
        f(3, "status", Kind::Message(&DEPLOYMENT_STATUS)),
    ],
};

/// The kinds decoded, for error messages.
pub const TOP_LEVEL_NAMES: &str = "v1 ConfigMap, Secret, Namespace, Service, ServiceAccount and ResourceQuota, and apps/v1 Deployment";

/// The message of a top-level kind.
pub fn top_level(api_version: &str, kind: &str) -> Option<&'static Message> {
    Some(match (api_version, kind) {
        ("v1", "ConfigMap") => &CONFIG_MAP,
        ("v1", "Secret") => &SECRET,
        ("v1", "Namespace") => &NAMESPACE,
        ("v1", "Service") => &SERVICE,
        ("v1", "ServiceAccount") => &SERVICE_ACCOUNT,
        ("v1", "ResourceQuota") => &RESOURCE_QUOTA,
        ("apps/v1", "Deployment") => &DEPLOYMENT,
        _ => return None,
    })
}
