//! `kontti network create|ls|inspect|rm|prune|connect|disconnect`. The work
//! happens in `kontti_engine::network` over `kontti_net`; this module parses
//! arguments and prints.

use std::io::{self, BufRead, Write};
use std::net::Ipv4Addr;

use clap::{Args, Subcommand};
use kontti_engine::network::{
    self, AddrError, Ipv4Net, NetError, NetworkError, NetworkFilter, NetworkSpec, NetworkState,
};
use serde_json::json;

use super::Context;
use super::format::{FormatError, Row, Template};

/// `kontti network ...`.
#[derive(Subcommand)]
pub enum NetworkCommand {
    /// Manage networks.
    #[command(subcommand)]
    Network(NetworkSub),
}

/// The network subcommands.
#[derive(Subcommand)]
pub enum NetworkSub {
    /// Create a bridge network and print its name.
    Create(CreateArgs),
    /// List networks.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Show details of networks as JSON.
    Inspect(NamesArgs),
    /// Remove networks that no container is connected to.
    #[command(alias = "remove")]
    Rm(NamesArgs),
    /// Remove every network no container uses (the default one stays).
    Prune(PruneArgs),
    /// Connect a running container to a network.
    Connect(ConnectArgs),
    /// Disconnect a container from a network.
    Disconnect(DisconnectArgs),
}

/// `kontti network create`.
#[derive(Args)]
pub struct CreateArgs {
    /// The subnet, A.B.C.D/N (default: the next free one of the pool).
    #[arg(long)]
    subnet: Option<String>,
    /// The gateway: must be the subnet's first address.
    #[arg(long)]
    gateway: Option<String>,
    /// The driver: only `bridge`.
    #[arg(long, short = 'd', default_value = "bridge")]
    driver: String,
    /// The MTU of the bridge and its endpoints.
    #[arg(long)]
    mtu: Option<u32>,
    /// A label, KEY=VALUE or KEY (repeatable).
    #[arg(long = "label")]
    labels: Vec<String>,
    /// The name.
    name: String,
}

/// `kontti network ls`.
#[derive(Args)]
pub struct LsArgs {
    /// Print ids only.
    #[arg(long, short = 'q')]
    quiet: bool,
    /// Do not truncate ids.
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// Filter: name=, id=, driver=, label=KEY[=VALUE], type=custom|builtin,
    /// dangling=true|false (repeatable).
    #[arg(long = "filter", short = 'f')]
    filters: Vec<String>,
    /// Go-template subset ({{.ID}}, {{.Name}}, {{.Driver}}, {{.Scope}},
    /// {{.Labels}}, {{json .}}, table ...) or `json`.
    #[arg(long)]
    format: Option<String>,
}

/// Commands that take network names (or ids, or unique id prefixes).
#[derive(Args)]
pub struct NamesArgs {
    /// The networks.
    #[arg(required = true)]
    names: Vec<String>,
}

/// `kontti network prune`.
#[derive(Args)]
pub struct PruneArgs {
    /// Do not ask for confirmation.
    #[arg(long, short = 'f')]
    force: bool,
}

/// `kontti network connect`.
#[derive(Args)]
pub struct ConnectArgs {
    /// Another DNS name for the container on this network (repeatable).
    #[arg(long = "alias")]
    aliases: Vec<String>,
    /// A fixed address in the network's subnet.
    #[arg(long)]
    ip: Option<Ipv4Addr>,
    /// The network.
    network: String,
    /// The container's name or id.
    container: String,
}

/// `kontti network disconnect`.
#[derive(Args)]
pub struct DisconnectArgs {
    /// Disconnect by id even when the container is gone.
    #[arg(long, short = 'f')]
    force: bool,
    /// The network.
    network: String,
    /// The container's name or id.
    container: String,
}

/// Runs a network command.
pub fn run(ctx: &Context, cmd: NetworkCommand) -> anyhow::Result<i32> {
    let NetworkCommand::Network(sub) = cmd;
    let root = &ctx.root;
    match sub {
        NetworkSub::Create(a) => create(ctx, a),
        NetworkSub::Ls(a) => ls(ctx, a),
        NetworkSub::Inspect(a) => inspect(ctx, a),
        NetworkSub::Rm(a) => rm(ctx, a),
        NetworkSub::Prune(a) => prune(ctx, a),
        NetworkSub::Connect(a) => {
            network::connect(root, &a.network, &a.container, &a.aliases, a.ip)?;
            Ok(0)
        }
        NetworkSub::Disconnect(a) => {
            network::disconnect(root, &a.network, &a.container, a.force)?;
            Ok(0)
        }
    }
}

fn create(ctx: &Context, a: CreateArgs) -> anyhow::Result<i32> {
    network::check_driver(&a.driver)?;
    let subnet = a.subnet.as_deref().map(str::parse::<Ipv4Net>).transpose()?;
    let gateway = match a.gateway.as_deref() {
        None => None,
        Some(g) => Some(
            g.parse::<Ipv4Addr>()
                .map_err(|_| NetError::InvalidGateway {
                    gateway: g.to_owned(),
                    reason: "not an IPv4 address".to_owned(),
                })?,
        ),
    };
    let mut labels = std::collections::BTreeMap::new();
    for l in &a.labels {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        if k.is_empty() {
            return Err(NetError::InvalidLabel(l.clone()).into());
        }
        labels.insert(k.to_owned(), v.to_owned());
    }
    let spec = NetworkSpec {
        name: a.name,
        labels,
        subnet,
        bridge: None,
        mtu: a.mtu,
        ..Default::default()
    };
    let state = network::create(&ctx.root, &spec, gateway)?;
    println!("{}", state.info.name);
    Ok(0)
}

/// `network ls` fields: name in templates, header.
const LS_FIELDS: &[(&str, &str)] = &[
    ("ID", "NETWORK ID"),
    ("Name", "NAME"),
    ("Driver", "DRIVER"),
    ("Scope", "SCOPE"),
    ("IPv6", "IPV6"),
    ("Internal", "INTERNAL"),
    ("Labels", "LABELS"),
    ("CreatedAt", "CREATED AT"),
];

fn ls(ctx: &Context, a: LsArgs) -> anyhow::Result<i32> {
    let filters = a
        .filters
        .iter()
        .map(|f| f.parse::<NetworkFilter>())
        .collect::<Result<Vec<_>, _>>()?;
    let template = match a.format.as_deref() {
        f if super::format::is_default(f) => None,
        Some(f) => Some(Template::parse(f, LS_FIELDS)?),
        None => None,
    };
    let list: Vec<NetworkState> = network::networks(&ctx.root)?
        .list()?
        .into_iter()
        .filter(|n| NetworkFilter::matches_all(&filters, n))
        .collect();
    let id = |n: &NetworkState| {
        if a.no_trunc {
            n.id.clone()
        } else {
            n.id.get(..12).unwrap_or(&n.id).to_owned()
        }
    };
    let mut out = io::stdout().lock();
    if a.quiet {
        for n in &list {
            writeln!(out, "{}", id(n))?;
        }
        return Ok(0);
    }
    let rows: Vec<Row> = list
        .iter()
        .map(|n| {
            Row::from([
                ("ID", id(n)),
                ("Name", n.info.name.clone()),
                ("Driver", "bridge".to_owned()),
                ("Scope", "local".to_owned()),
                ("IPv6", "false".to_owned()),
                ("Internal", "false".to_owned()),
                (
                    "Labels",
                    n.labels
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                ("CreatedAt", created(n)),
            ])
        })
        .collect();
    if let Some(t) = template {
        t.print(&mut out, LS_FIELDS, &rows)?;
        return Ok(0);
    }
    let cols = ["ID", "Name", "Driver", "Scope"];
    let heads = ["NETWORK ID", "NAME", "DRIVER", "SCOPE"];
    // docker's tabwriter: columns at least 10 wide, 3 spaces of padding
    let widths: Vec<usize> = cols
        .iter()
        .zip(heads)
        .map(|(c, h)| {
            let w = rows.iter().map(|r| r[c].len()).max().unwrap_or(0);
            (w.max(h.len()) + 3).max(10)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            s.push_str(&format!("{c:<w$}", w = widths[i]));
        }
        s.trim_end().to_owned()
    };
    writeln!(out, "{}", line(heads.to_vec()))?;
    for r in &rows {
        writeln!(
            out,
            "{}",
            line(cols.iter().map(|c| r[c].as_str()).collect())
        )?;
    }
    Ok(0)
}

/// When `n` was created, RFC 3339 (docker's zero time for networks stored
/// before kontti kept it).
fn created(n: &NetworkState) -> String {
    n.created.map_or_else(
        || "0001-01-01T00:00:00Z".to_owned(),
        |t| kontti_image::time::format_rfc3339(i64::try_from(t).unwrap_or(i64::MAX)),
    )
}

fn to_json(n: &NetworkState) -> serde_json::Value {
    let containers: serde_json::Map<String, serde_json::Value> = n
        .endpoints
        .values()
        .map(|e| {
            let a = &e.attachment;
            (
                e.container.clone(),
                json!({
                    "Name": e.name,
                    "Aliases": e.aliases,
                    "EndpointID": a.host_ifname,
                    "Interface": a.ifname,
                    "IPv4Address": format!("{}/{}", a.address, a.prefix),
                    "Ports": e.ports.iter().map(ToString::to_string).collect::<Vec<_>>(),
                }),
            )
        })
        .collect();
    json!({
        "Name": n.info.name,
        "Id": n.id,
        "Created": created(n),
        "Scope": "local",
        "Driver": "bridge",
        "EnableIPv6": false,
        "IPAM": {
            "Driver": "default",
            "Config": [{"Subnet": n.info.subnet.to_string(), "Gateway": n.info.gateway.to_string()}],
        },
        "Internal": false,
        "DNSEnabled": n.dns_pid.is_some(),
        "Containers": containers,
        "Options": {
            "com.docker.network.bridge.name": n.info.bridge,
            "com.docker.network.driver.mtu": n.info.mtu.to_string(),
        },
        "Labels": n.labels,
    })
}

/// Prints `err` as main does and returns its exit code.
fn report(err: &NetError) -> i32 {
    eprintln!("kontti: {err}");
    err.kind().exit_code()
}

fn inspect(ctx: &Context, a: NamesArgs) -> anyhow::Result<i32> {
    let nets = network::networks(&ctx.root)?;
    let mut found = Vec::new();
    let mut code = 0;
    for name in &a.names {
        match nets.inspect(name) {
            Ok(n) => found.push(to_json(&n)),
            Err(e) => {
                let c = report(&e.into());
                if code == 0 {
                    code = c;
                }
            }
        }
    }
    super::volume::print_json(&serde_json::Value::Array(found))?;
    Ok(code)
}

fn rm(ctx: &Context, a: NamesArgs) -> anyhow::Result<i32> {
    let nets = network::networks(&ctx.root)?;
    let mut code = 0;
    for name in &a.names {
        match nets.remove(name) {
            Ok(()) => println!("{name}"),
            Err(e) => {
                let c = report(&e.into());
                if code == 0 {
                    code = c;
                }
            }
        }
    }
    Ok(code)
}

fn prune(ctx: &Context, a: PruneArgs) -> anyhow::Result<i32> {
    if !a.force {
        print!(
            "WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue? [y/N] "
        );
        io::stdout().flush()?;
        let mut line = String::new();
        io::stdin().lock().read_line(&mut line)?;
        if !matches!(line.trim(), "y" | "Y" | "yes" | "Yes") {
            return Ok(0);
        }
    }
    let removed = network::prune(&ctx.root)?;
    if !removed.is_empty() {
        println!("Deleted Networks:");
        for n in removed {
            println!("{n}");
        }
    }
    Ok(0)
}

/// The exit code for a network command's error, from its kind.
pub fn exit_code(e: &anyhow::Error) -> Option<i32> {
    if let Some(n) = e.downcast_ref::<NetError>() {
        return Some(n.kind().exit_code());
    }
    if let Some(n) = e.downcast_ref::<NetworkError>() {
        return Some(n.kind().exit_code());
    }
    if let Some(f) = e.downcast_ref::<FormatError>() {
        return Some(f.kind().exit_code());
    }
    e.downcast_ref::<AddrError>().map(|a| a.kind().exit_code())
}
