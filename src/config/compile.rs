//! The schema of `aerospike-esp-outbound.yml` (plus this project's
//! extensions) and its compilation into a [`Plan`].
//!
//! Each section has one function that reads it through [`Ctx`] and returns
//! what it could build; errors accumulate in the context so that one run
//! reports every problem of the file. Defaults are the original's (see
//! docs/CONFIG.md).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_yaml_ng::Value;
use sluice_shards::plan::{
    BatchPlan, DeadLetterPlan, DestinationId, DestinationPlan, EndpointPlan, Fsync,
    HealthCheckPlan, HttpVersion, ListenerPlan, NamespaceTable, OrderingPlan, Plan, PortTable,
    RetryBudgetPlan, RetryPlan, Route, RouteAction, RouteId, RouteTable, ServicePlan, StatusSet,
};

use super::format::{self, BinSpec, FormatSpec};
use super::tree::{join, Ctx, Obj};
use super::{LogFormat, LoggingConfig};

const JAVA_STORES: &str =
    "Java key/trust stores are not read: convert them to PEM and use `ca-file`, `cert-file`, `key-file`";

/// What a config file compiles to: the plan for the shards, the logging
/// settings for the control thread, and descriptions for `check-config`.
#[derive(Debug)]
pub struct Compiled {
    pub plan: Plan,
    pub logging: LoggingConfig,
    /// One line per entry of `plan.formats`.
    pub format_names: Vec<String>,
    /// The routes' origins ("default", "namespace test", "port 3001 set test.demo").
    pub route_origins: Vec<Vec<String>>,
}

/// Routing of one level.
#[derive(Debug, Clone, PartialEq)]
enum Routing {
    Skip,
    Deliver(Vec<DestinationId>),
}

/// The settings one level (default, port, namespace, set) gives; unset
/// fields inherit from the enclosing level.
#[derive(Debug, Clone, Default)]
struct Level {
    routing: Option<Routing>,
    format: Option<FormatSpec>,
    bins: Option<BinSpec>,
    batching: Option<Option<BatchPlan>>,
    ordering: Option<Option<OrderingPlan>>,
}

impl Level {
    fn over(&self, parent: &Level) -> Level {
        Level {
            routing: self.routing.clone().or_else(|| parent.routing.clone()),
            format: self.format.clone().or_else(|| parent.format.clone()),
            bins: self.bins.clone().or_else(|| parent.bins.clone()),
            batching: self.batching.clone().or_else(|| parent.batching.clone()),
            ordering: self.ordering.or(parent.ordering),
        }
    }
}

/// Compiles the whole file. `base` is the directory relative file names
/// (PEM files, schema files) are resolved against.
pub fn compile(ctx: &mut Ctx, root: &Value, base: &Path) -> Option<Compiled> {
    if root.is_null() {
        ctx.err(
            "",
            "the config is empty: it needs at least `destinations` and `routing`",
        );
        return None;
    }
    let top = ctx.obj(
        "",
        root,
        &[
            "service",
            "destinations",
            "routing",
            "format",
            "bin-transforms",
            "namespaces",
            "port-based-config",
            "batching",
            "record-ordering",
            "logging",
            "dead-letter",
        ],
        &[(
            "message-transformer",
            "message transformers are Java classes; sluice cannot load them",
        )],
    )?;
    let service = match top.get("service") {
        Some((p, v)) => service(ctx, &p, v, base),
        None => service(ctx, "service", &Value::Mapping(Default::default()), base),
    };
    let mut names = Vec::new();
    let mut destinations = Vec::new();
    match top.get("destinations") {
        Some((p, v)) => {
            for (dp, name, dv) in ctx.entries(&p, v) {
                if let Some(d) = destination(ctx, &dp, &name, dv, base) {
                    destinations.push(d);
                }
                names.push(name);
            }
        }
        None => ctx.err(
            "destinations",
            "no `destinations` section: at least one destination is required",
        ),
    }
    let logging = match top.get("logging") {
        Some((p, v)) => logging(ctx, &p, v),
        None => Some(LoggingConfig::default()),
    };
    let dead_letter = match top.get("dead-letter") {
        Some((p, v)) => dead_letter(ctx, &p, v, base),
        None => None,
    };

    let default = level(ctx, &top, &names, base);
    if top.get("routing").is_none() {
        ctx.err(
            "routing",
            "no top-level `routing` section: say where records go (`mode: static-multi-destination` or `mode: skip`)",
        );
    }
    let mut builder = RouteBuilder::default();
    let mut table = RouteTable {
        default: builder.route(&default, "default".into()),
        ..Default::default()
    };
    if let Some((p, v)) = top.get("namespaces") {
        table.any_port = namespaces(ctx, &p, v, &default, &names, base, &mut builder, "");
    }
    let listener_ports: BTreeSet<u16> = service
        .as_ref()
        .map(|s| s.listeners.iter().map(|l| l.addr.port()).collect())
        .unwrap_or_default();
    if let Some((p, v)) = top.get("port-based-config") {
        for (pp, port_name, pv) in ctx.entries(&p, v) {
            let Ok(port) = port_name.parse::<u16>() else {
                ctx.err(&pp, format!("`{port_name}` is not a port number"));
                continue;
            };
            if service.is_some() && !listener_ports.contains(&port) {
                ctx.err(
                    &pp,
                    format!("port {port} is not one of the listening ports (`service.port`, `service.tls.port`)"),
                );
            }
            let Some(obj) = ctx.obj(
                &pp,
                pv,
                &[
                    "routing",
                    "format",
                    "bin-transforms",
                    "batching",
                    "record-ordering",
                    "namespaces",
                ],
                &[],
            ) else {
                continue;
            };
            let own = level(ctx, &obj, &names, base).over(&default);
            let mut pt = PortTable {
                default: Some(builder.route(&own, format!("port {port}"))),
                ..Default::default()
            };
            if let Some((np, nv)) = obj.get("namespaces") {
                let origin = format!("port {port} ");
                let sub = namespaces(ctx, &np, nv, &own, &names, base, &mut builder, &origin);
                pt.namespaces = sub.namespaces;
            }
            table.ports.insert(port, pt);
        }
    }
    if !ctx.errors.is_empty() {
        return None;
    }
    let (routes, origins, specs) = builder.finish();
    let mut formats = Vec::new();
    let mut format_names = Vec::new();
    for (i, (spec, bins)) in specs.iter().enumerate() {
        match format::build(spec, bins) {
            Ok(f) => formats.push(f),
            Err(e) => ctx.err("format", format!("format {i} ({}): {e}", spec.describe())),
        }
        format_names.push(format!("{} {}", spec.describe(), bins.describe()));
    }
    let plan = Plan {
        service: service?,
        destinations,
        formats,
        routes,
        table,
        dead_letter,
    };
    Some(Compiled {
        plan,
        logging: logging?,
        format_names,
        route_origins: origins,
    })
}

/// Deduplicates formats and routes while the levels are compiled.
#[derive(Default)]
struct RouteBuilder {
    formats: Vec<(FormatSpec, BinSpec)>,
    routes: Vec<Route>,
    origins: Vec<Vec<String>>,
}

impl RouteBuilder {
    fn format(&mut self, spec: FormatSpec, bins: BinSpec) -> usize {
        let key = (spec, bins);
        match self.formats.iter().position(|f| *f == key) {
            Some(i) => i,
            None => {
                self.formats.push(key);
                self.formats.len() - 1
            }
        }
    }

    fn route(&mut self, level: &Level, origin: String) -> RouteId {
        let action = match &level.routing {
            None | Some(Routing::Skip) => RouteAction::Skip,
            Some(Routing::Deliver(ds)) => RouteAction::Deliver {
                format: self.format(
                    level
                        .format
                        .clone()
                        .unwrap_or(FormatSpec::Json { json_array: false }),
                    level.bins.clone().unwrap_or_default(),
                ),
                destinations: ds.clone(),
            },
        };
        let batching = level.batching.clone().flatten();
        let ordering = level.ordering.flatten();
        let found = self
            .routes
            .iter()
            .position(|r| r.action == action && r.batching == batching && r.ordering == ordering);
        match found {
            Some(i) => {
                self.origins[i].push(origin);
                i
            }
            None => {
                self.routes.push(Route {
                    action,
                    batching,
                    ordering,
                });
                self.origins.push(vec![origin]);
                self.routes.len() - 1
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn finish(&mut self) -> (Vec<Route>, Vec<Vec<String>>, Vec<(FormatSpec, BinSpec)>) {
        (
            std::mem::take(&mut self.routes),
            std::mem::take(&mut self.origins),
            std::mem::take(&mut self.formats),
        )
    }
}

/// `namespaces:` → a port table (namespace defaults and sets).
#[allow(clippy::too_many_arguments)]
fn namespaces(
    ctx: &mut Ctx,
    path: &str,
    v: &Value,
    parent: &Level,
    names: &[String],
    base: &Path,
    builder: &mut RouteBuilder,
    origin: &str,
) -> PortTable {
    let mut table = PortTable::default();
    for (np, ns, nv) in ctx.entries(path, v) {
        let Some(obj) = ctx.obj(
            &np,
            nv,
            &[
                "routing",
                "format",
                "bin-transforms",
                "batching",
                "record-ordering",
                "sets",
            ],
            &[],
        ) else {
            continue;
        };
        let own = level(ctx, &obj, names, base).over(parent);
        let mut nt = NamespaceTable {
            default: Some(builder.route(&own, format!("{origin}namespace {ns}"))),
            ..Default::default()
        };
        if let Some((sp, sv)) = obj.get("sets") {
            for (setp, set, setv) in ctx.entries(&sp, sv) {
                let Some(sobj) = ctx.obj(
                    &setp,
                    setv,
                    &[
                        "routing",
                        "format",
                        "bin-transforms",
                        "batching",
                        "record-ordering",
                    ],
                    &[],
                ) else {
                    continue;
                };
                let set_level = level(ctx, &sobj, names, base).over(&own);
                let id = builder.route(&set_level, format!("{origin}set {ns}.{set}"));
                nt.sets.insert(set, id);
            }
        }
        table.namespaces.insert(ns, nt);
    }
    table
}

/// The per-level keys: routing, format, bin-transforms, batching, record-ordering.
fn level(ctx: &mut Ctx, obj: &Obj<'_>, names: &[String], base: &Path) -> Level {
    let mut l = Level::default();
    if let Some((p, v)) = obj.get("routing") {
        l.routing = routing(ctx, &p, v, names);
    }
    if let Some((p, v)) = obj.get("format") {
        l.format = format::format(ctx, &p, v, base);
    }
    if let Some((p, v)) = obj.get("bin-transforms") {
        l.bins = format::bins(ctx, &p, v);
    }
    if let Some((p, v)) = obj.get("batching") {
        l.batching = batching(ctx, &p, v);
    }
    if let Some((p, v)) = obj.get("record-ordering") {
        l.ordering = ordering(ctx, &p, v);
    }
    l
}

fn routing(ctx: &mut Ctx, path: &str, v: &Value, names: &[String]) -> Option<Routing> {
    let obj = ctx.obj(
        path,
        v,
        &["mode", "destinations"],
        &[(
            "class",
            "custom routers are Java classes; sluice cannot load them",
        )],
    )?;
    let Some((mp, mode)) = obj.get("mode") else {
        ctx.err(
            path,
            "`mode` is required (static-multi-destination or skip)",
        );
        return None;
    };
    let mode = ctx.str(&mp, mode)?;
    match mode {
        "skip" => {
            if let Some((dp, _)) = obj.get("destinations") {
                ctx.err(&dp, "`destinations` has no meaning with `mode: skip`");
            }
            Some(Routing::Skip)
        }
        "static-multi-destination" => {
            let Some((dp, dv)) = obj.get("destinations") else {
                ctx.err(path, "`mode: static-multi-destination` needs `destinations` (a list of destination names)");
                return None;
            };
            let list = ctx.strings(&dp, dv);
            if list.is_empty() {
                ctx.err(&dp, "the list of destinations is empty");
                return None;
            }
            let mut ids = Vec::new();
            for (ip, name) in list {
                match names.iter().position(|n| *n == name) {
                    Some(id) if ids.contains(&id) => {
                        ctx.err(&ip, format!("destination `{name}` is listed twice"));
                    }
                    Some(id) => ids.push(id),
                    None => ctx.err(
                        &ip,
                        format!(
                            "route to undefined destination `{name}` (defined: {})",
                            if names.is_empty() {
                                "none".to_owned()
                            } else {
                                names.join(", ")
                            }
                        ),
                    ),
                }
            }
            (ids.len() == list_len(dv)).then_some(Routing::Deliver(ids))
        }
        "custom" => {
            ctx.err(
                &mp,
                "`mode: custom` loads a Java router class in the original connector; sluice cannot run Java code: \
                 use `static-multi-destination` per namespace/set (`namespaces:`) or per port (`port-based-config:`)",
            );
            None
        }
        other => {
            ctx.err(
                &mp,
                format!("unknown routing mode `{other}` (expected static-multi-destination, skip)"),
            );
            None
        }
    }
}

fn list_len(v: &Value) -> usize {
    v.as_sequence().map_or(0, Vec::len)
}

fn batching(ctx: &mut Ctx, path: &str, v: &Value) -> Option<Option<BatchPlan>> {
    let obj = ctx.obj(
        path,
        v,
        &["enabled", "max-records", "max-bytes", "batch-interval"],
        &[],
    )?;
    let enabled = obj.bool(ctx, "enabled").unwrap_or(true);
    let max_records = obj.count(ctx, "max-records", "records", 100);
    let max_bytes = obj.u64(ctx, "max-bytes", "bytes").unwrap_or(1 << 20);
    let interval = obj
        .u64(ctx, "batch-interval", "milliseconds")
        .unwrap_or(100);
    if interval >= 5000 {
        ctx.err(
            &join(path, "batch-interval"),
            format!("{interval} ms leaves no room inside XDR's 10-second ack deadline (use less than 5000)"),
        );
    }
    Some(enabled.then(|| BatchPlan {
        max_records,
        max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
        interval: Duration::from_millis(interval),
    }))
}

fn ordering(ctx: &mut Ctx, path: &str, v: &Value) -> Option<Option<OrderingPlan>> {
    let obj = ctx.obj(
        path,
        v,
        &["enabled", "lut-cache-ttl-seconds", "lut-cache-max-keys"],
        &[],
    )?;
    let enabled = obj.bool(ctx, "enabled").unwrap_or(true);
    let ttl = obj
        .u64(ctx, "lut-cache-ttl-seconds", "seconds")
        .unwrap_or(30);
    let max_keys = obj.count(ctx, "lut-cache-max-keys", "keys", 100_000);
    Some(enabled.then(|| OrderingPlan {
        ttl: Duration::from_secs(ttl),
        max_keys,
    }))
}

/// Extension: `dead-letter`, where records refused for good are written.
fn dead_letter(ctx: &mut Ctx, path: &str, v: &Value, base: &Path) -> Option<DeadLetterPlan> {
    let obj = ctx.obj(path, v, &["file", "fsync"], &[])?;
    let Some(name) = obj.str(ctx, "file") else {
        ctx.err(
            &join(path, "file"),
            "required: the file dead letters are appended to",
        );
        return None;
    };
    let file = resolve(base, name);
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir.filter(|d| !d.is_dir()) {
        ctx.err(
            &join(path, "file"),
            format!("the directory {} does not exist", dir.display()),
        );
    }
    let fsync = match obj.str(ctx, "fsync").unwrap_or("always") {
        "always" => Fsync::Always,
        "batch" => Fsync::Batch,
        "never" => Fsync::Never,
        other => {
            ctx.err(
                &join(path, "fsync"),
                format!("`{other}` is not a policy (expected one of: always, batch, never)"),
            );
            return None;
        }
    };
    Some(DeadLetterPlan { file, fsync })
}

fn ports(ctx: &mut Ctx, path: &str, v: &Value) -> Vec<u16> {
    let mut out = Vec::new();
    for (p, item) in ctx.one_or_list(path, v) {
        match item
            .as_u64()
            .or_else(|| super::tree::numeric_text(item))
            .map(u16::try_from)
        {
            Some(Ok(port)) => out.push(port),
            _ => ctx.err(
                &p,
                format!(
                    "expected a port number (0-65535), found {}",
                    super::tree::kind(item)
                ),
            ),
        }
    }
    out
}

fn address(ctx: &mut Ctx, obj: &Obj<'_>, default: IpAddr) -> IpAddr {
    let Some((p, v)) = obj.get("address") else {
        return default;
    };
    let Some(s) = ctx.str(&p, v) else {
        return default;
    };
    match s.parse() {
        Ok(a) => a,
        Err(_) => {
            ctx.err(&p, format!("`{s}` is not an IP address"));
            default
        }
    }
}

fn service(ctx: &mut Ctx, path: &str, v: &Value, base: &Path) -> Option<ServicePlan> {
    let obj = ctx.obj(
        path,
        v,
        &[
            "port",
            "ports",
            "address",
            "tls",
            "manage",
            "protocol",
            "io-threads",
            "worker-threads",
            "max-concurrent-records",
            "cluster-name",
            "enable-tcp-xdr-ack-buffering",
            "socket-receive-buffer-bytes",
            "max-message-bytes",
        ],
        &[],
    )?;
    let addr = address(ctx, &obj, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let plain = obj
        .get_either(ctx, "port", "ports")
        .map(|(p, v)| ports(ctx, &p, v));
    let mut listeners = Vec::new();
    let tls_ports = match obj.get("tls") {
        Some((tp, tv)) => listener_tls(ctx, &tp, tv, base),
        None => None,
    };
    let plain = match (&plain, &tls_ports) {
        (Some(p), _) => p.clone(),
        (None, Some(_)) => Vec::new(),
        (None, None) => vec![8080],
    };
    for port in plain {
        listeners.push(ListenerPlan {
            addr: SocketAddr::new(addr, port),
            tls: None,
        });
    }
    if let Some((tls_ports, config)) = tls_ports {
        for port in tls_ports {
            if listeners.iter().any(|l| l.addr.port() == port) {
                ctx.err(
                    &join(path, "tls.port"),
                    format!("port {port} is both a plain and a TLS port"),
                );
            }
            listeners.push(ListenerPlan {
                addr: SocketAddr::new(addr, port),
                tls: Some(config.clone()),
            });
        }
    }
    if let Some((p, v)) = obj.get("protocol") {
        if let Some(s) = ctx.str(&p, v) {
            if !s.eq_ignore_ascii_case("tcp") {
                ctx.err(&p, format!("protocol `{s}` is not supported (only tcp)"));
            }
        }
    }
    for key in ["io-threads", "worker-threads"] {
        // Accepted for compatibility; the shard count is set with --shards/--cores.
        let _ = obj.u64(ctx, key, "threads");
    }
    let _ = obj.str(ctx, "cluster-name");
    let max_concurrent_records = obj.count(ctx, "max-concurrent-records", "records", 32768);
    let ack_buffering = obj
        .bool(ctx, "enable-tcp-xdr-ack-buffering")
        .unwrap_or(true);
    let socket_receive_buffer_bytes = obj
        .u64(ctx, "socket-receive-buffer-bytes", "bytes")
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    let max_message_bytes = obj
        .u64(ctx, "max-message-bytes", "bytes")
        .unwrap_or(16 << 20);
    let manage = match obj.get("manage") {
        Some((mp, mv)) => manage(ctx, &mp, mv),
        None => None,
    };
    Some(ServicePlan {
        listeners,
        max_concurrent_records,
        ack_buffering,
        max_message_bytes: usize::try_from(max_message_bytes).unwrap_or(usize::MAX),
        socket_receive_buffer_bytes,
        manage,
    })
}

fn manage(ctx: &mut Ctx, path: &str, v: &Value) -> Option<SocketAddr> {
    let obj = ctx.obj(path, v, &["port", "ports", "address"], &[])?;
    let addr = address(ctx, &obj, IpAddr::V4(Ipv4Addr::LOCALHOST));
    let port = match obj.get_either(ctx, "port", "ports") {
        Some((p, v)) => {
            let list = ports(ctx, &p, v);
            if list.len() > 1 {
                ctx.err(&p, "the manage API listens on one port");
            }
            *list.first()?
        }
        None => 8902,
    };
    Some(SocketAddr::new(addr, port))
}

fn resolve(base: &Path, file: &str) -> PathBuf {
    let p = Path::new(file);
    if p.is_absolute() {
        p.to_owned()
    } else {
        base.join(p)
    }
}

/// `service.tls`: ports and the server config.
fn listener_tls(
    ctx: &mut Ctx,
    path: &str,
    v: &Value,
    base: &Path,
) -> Option<(Vec<u16>, Arc<rustls::ServerConfig>)> {
    let obj = ctx.obj(
        path,
        v,
        &["port", "ports", "cert-file", "key-file", "ca-file"],
        &[("key-store", JAVA_STORES), ("trust-store", JAVA_STORES)],
    )?;
    let ports = match obj.get_either(ctx, "port", "ports") {
        Some((p, v)) => ports(ctx, &p, v),
        None => {
            ctx.err(path, "`port` is required: the port of the TLS listener");
            return None;
        }
    };
    let cert = file_key(ctx, &obj, "cert-file", base, true);
    let key = file_key(ctx, &obj, "key-file", base, true);
    let ca = file_key(ctx, &obj, "ca-file", base, false);
    let (cert, key) = (cert?, key?);
    let config =
        sluice_shards::tls::server_config(&cert.1, &key.1, ca.as_ref().map(|c| c.1.as_path()), &[]);
    match config {
        Ok(c) => Some((ports, c)),
        Err(e) => {
            let at = tls_error_path(&e, &[&cert, &key], ca.as_ref());
            ctx.err(&at, e.to_string());
            None
        }
    }
}

/// A file name key, resolved; `required` reports its absence.
fn file_key(
    ctx: &mut Ctx,
    obj: &Obj<'_>,
    key: &str,
    base: &Path,
    required: bool,
) -> Option<(String, PathBuf)> {
    match obj.get(key) {
        Some((p, v)) => {
            let s = ctx.str(&p, v)?;
            Some((p, resolve(base, s)))
        }
        None => {
            if required {
                ctx.err(&obj.path, format!("`{key}` is required (a PEM file)"));
            }
            None
        }
    }
}

/// The key whose file a TLS error is about (errors name the file).
fn tls_error_path(
    e: &sluice_shards::tls::TlsError,
    files: &[&(String, PathBuf)],
    ca: Option<&(String, PathBuf)>,
) -> String {
    let text = e.to_string();
    let all: Vec<&(String, PathBuf)> = ca.into_iter().chain(files.iter().copied()).collect();
    all.iter()
        .find(|(_, f)| text.contains(&f.display().to_string()))
        .or(all.first())
        .map(|(p, _)| p.clone())
        .unwrap_or_default()
}

fn duration_ms(ctx: &mut Ctx, obj: &Obj<'_>, key: &str, default: u64) -> Duration {
    Duration::from_millis(obj.u64(ctx, key, "milliseconds").unwrap_or(default))
}

fn destination(
    ctx: &mut Ctx,
    path: &str,
    name: &str,
    v: &Value,
    base: &Path,
) -> Option<DestinationPlan> {
    let obj = ctx.obj(
        path,
        v,
        &[
            "urls",
            "protocol",
            "method",
            "compression",
            "compression-threshold",
            "tls",
            "max-connections-per-endpoint",
            "max-request-queued-per-endpoint",
            "call-timeout",
            "connect-timeout",
            "connection-ttl",
            "health-check",
            "headers",
            "http-success-status-codes",
            "retry",
        ],
        &[(
            "aws-authentication",
            "AWS SigV4 request signing is not implemented; use a function URL or API key header",
        )],
    )?;
    let version = match obj.get("protocol") {
        Some((p, v)) => match ctx.str(&p, v)? {
            "HTTP_2" | "http2" | "h2" => HttpVersion::Http2,
            "HTTP_1_1" | "http1.1" => HttpVersion::Http1,
            other => {
                ctx.err(
                    &p,
                    format!("unknown protocol `{other}` (expected HTTP_2 or HTTP_1_1)"),
                );
                return None;
            }
        },
        None => HttpVersion::Http2,
    };
    let mut endpoints = Vec::new();
    match obj.get("urls") {
        Some((p, v)) => {
            let list = ctx.strings(&p, v);
            if list.is_empty() && v.is_sequence() {
                ctx.err(&p, "the list of URLs is empty");
            }
            for (up, url) in list {
                match endpoint(&url) {
                    Ok(e) => endpoints.push(e),
                    Err(why) => ctx.err(&up, format!("bad URL `{url}`: {why}")),
                }
            }
        }
        None => ctx.err(
            path,
            "`urls` is required (a list of http:// or https:// URLs)",
        ),
    }
    let method = method(ctx, &obj, http::Method::POST);
    let gzip = match obj.str(ctx, "compression") {
        None | Some("none") => false,
        Some("gzip") => true,
        Some(other) => {
            ctx.err(
                &join(path, "compression"),
                format!("unknown compression `{other}` (expected none or gzip)"),
            );
            false
        }
    };
    let threshold = obj.u64(ctx, "compression-threshold", "bytes").unwrap_or(0);
    let alpn: &[&[u8]] = match version {
        HttpVersion::Http2 => &[b"h2"],
        HttpVersion::Http1 => &[b"http/1.1"],
    };
    let (tls, tls_server_name, tls_identity) = match obj.get("tls") {
        Some((tp, tv)) => destination_tls(ctx, &tp, tv, base, alpn)?,
        None => (None, None, None),
    };
    if tls.is_none() && endpoints.iter().any(|e| e.https) {
        ctx.err(
            &join(path, "urls"),
            "https:// URLs need `tls.ca-file` (the CA that signs the servers' certificates)",
        );
    }
    let max_conn = obj.count(ctx, "max-connections-per-endpoint", "connections", 1);
    let queued = obj
        .u64(ctx, "max-request-queued-per-endpoint", "requests")
        .unwrap_or(32768);
    let call_timeout = duration_ms(ctx, &obj, "call-timeout", 1000);
    let connect_timeout = duration_ms(ctx, &obj, "connect-timeout", 300);
    let connection_ttl = match obj.get("connection-ttl") {
        Some((p, v)) => match ctx.i64(&p, v, "milliseconds, -1 = forever")? {
            n if n < 0 => None,
            n => Some(Duration::from_millis(n.unsigned_abs())),
        },
        None => None,
    };
    let headers = match obj.get("headers") {
        Some((p, v)) => headers(ctx, &p, v),
        None => Vec::new(),
    };
    let success = match obj.get("http-success-status-codes") {
        Some((p, v)) => status_set(ctx, &p, v)?,
        None => StatusSet(vec![(200, 299)]),
    };
    let health_check = match obj.get("health-check") {
        Some((p, v)) => Some(health_check(ctx, &p, v)?),
        None => None,
    };
    let retry = match obj.get("retry") {
        Some((p, v)) => retry(ctx, &p, v)?,
        None => default_retry(),
    };
    Some(DestinationPlan {
        name: name.to_owned(),
        endpoints,
        version,
        method,
        tls,
        tls_server_name,
        tls_identity,
        max_connections_per_endpoint: max_conn,
        max_requests_queued_per_endpoint: usize::try_from(queued).unwrap_or(usize::MAX),
        call_timeout,
        connect_timeout,
        connection_ttl,
        headers,
        success,
        gzip_threshold: gzip.then(|| usize::try_from(threshold).unwrap_or(usize::MAX)),
        health_check,
        retry,
    })
}

/// The client config, the server name override, and the TLS identity
/// (see `DestinationPlan::tls_identity`).
type ClientTls = (
    Option<Arc<rustls::ClientConfig>>,
    Option<String>,
    Option<String>,
);

/// File names and a digest of their contents: equal exactly when a reload
/// would build the same TLS config from them.
fn tls_identity(files: &[&Path]) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let mut names = Vec::with_capacity(files.len());
    for f in files {
        names.push(f.display().to_string());
        std::fs::read(f).unwrap_or_default().hash(&mut h);
    }
    format!("{}#{:016x}", names.join(","), h.finish())
}

fn destination_tls(
    ctx: &mut Ctx,
    path: &str,
    v: &Value,
    base: &Path,
    alpn: &[&[u8]],
) -> Option<ClientTls> {
    let obj = ctx.obj(
        path,
        v,
        &["ca-file", "cert-file", "key-file", "server-name"],
        &[("key-store", JAVA_STORES), ("trust-store", JAVA_STORES)],
    )?;
    let ca = file_key(ctx, &obj, "ca-file", base, true)?;
    let cert = file_key(ctx, &obj, "cert-file", base, false);
    let key = file_key(ctx, &obj, "key-file", base, false);
    if cert.is_some() != key.is_some() {
        ctx.err(
            path,
            "a client certificate needs both `cert-file` and `key-file`",
        );
        return None;
    }
    let server_name = obj.str(ctx, "server-name").map(str::to_owned);
    let auth = cert.as_ref().zip(key.as_ref());
    let config = sluice_shards::tls::client_config(
        Some(&ca.1),
        auth.map(|(c, k)| (c.1.as_path(), k.1.as_path())),
        alpn,
    );
    match config {
        Ok(c) => {
            let mut files = vec![ca.1.as_path()];
            if let Some((c, k)) = auth {
                files.extend([c.1.as_path(), k.1.as_path()]);
            }
            Some((Some(c), server_name, Some(tls_identity(&files))))
        }
        Err(e) => {
            let files: Vec<&(String, PathBuf)> = cert.iter().chain(key.iter()).collect();
            let at = tls_error_path(&e, &files, Some(&ca));
            ctx.err(&at, e.to_string());
            None
        }
    }
}

/// `method`: an HTTP method name, `default` when absent.
fn method(ctx: &mut Ctx, obj: &Obj<'_>, default: http::Method) -> http::Method {
    let Some(m) = obj.str(ctx, "method") else {
        return default;
    };
    match http::Method::from_bytes(m.as_bytes()) {
        Ok(m) => m,
        Err(_) => {
            ctx.err(
                &join(&obj.path, "method"),
                format!("`{m}` is not an HTTP method"),
            );
            default
        }
    }
}

fn endpoint(url: &str) -> Result<EndpointPlan, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| e.to_string())?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        Some(other) => return Err(format!("scheme `{other}` is not http or https")),
        None => return Err("no scheme (http:// or https://)".into()),
    };
    let host = uri.host().ok_or("no host")?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    Ok(EndpointPlan {
        url: url.to_owned(),
        https,
        port: uri.port_u16().unwrap_or(if https { 443 } else { 80 }),
        host,
        path_and_query: uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
    })
}

fn headers(ctx: &mut Ctx, path: &str, v: &Value) -> Vec<(http::HeaderName, http::HeaderValue)> {
    let mut out = Vec::new();
    for (hp, name, hv) in ctx.entries(path, v) {
        let value = match hv {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => {
                ctx.err(
                    &hp,
                    format!(
                        "expected a header value (a string), found {}",
                        super::tree::kind(other)
                    ),
                );
                continue;
            }
        };
        let Ok(hname) = http::HeaderName::from_bytes(name.as_bytes()) else {
            ctx.err(&hp, format!("`{name}` is not a valid header name"));
            continue;
        };
        // The value may be a secret: the message never repeats it.
        match http::HeaderValue::from_str(&value) {
            Ok(mut hv) => {
                if hname == http::header::AUTHORIZATION
                    || name.to_ascii_lowercase().contains("key")
                    || name.to_ascii_lowercase().contains("token")
                {
                    hv.set_sensitive(true);
                }
                out.push((hname, hv));
            }
            Err(_) => ctx.err(
                &hp,
                "the header value has characters not allowed in HTTP headers",
            ),
        }
    }
    out
}

/// Status codes: integers, `"200-299"` ranges, or `"2xx"` classes.
fn status_set(ctx: &mut Ctx, path: &str, v: &Value) -> Option<StatusSet> {
    let mut ranges = Vec::new();
    let mut ok = true;
    for (p, item) in ctx.one_or_list(path, v) {
        let range = match item {
            Value::Number(n) => n
                .as_u64()
                .and_then(|c| u16::try_from(c).ok())
                .map(|c| (c, c)),
            Value::String(s) => parse_status_range(s),
            _ => None,
        };
        match range {
            Some((lo, hi)) if (100..=599).contains(&lo) && (lo..=599).contains(&hi) => {
                ranges.push((lo, hi))
            }
            _ => {
                ok = false;
                ctx.err(&p, "expected an HTTP status code (100-599), a range like \"200-299\" or a class like \"2xx\"");
            }
        }
    }
    if ranges.is_empty() && ok {
        ctx.err(path, "the list of status codes is empty");
        return None;
    }
    ok.then_some(StatusSet(ranges))
}

fn parse_status_range(s: &str) -> Option<(u16, u16)> {
    let s = s.trim();
    if let Some(class) = s.strip_suffix("xx").or_else(|| s.strip_suffix("XX")) {
        let c: u16 = class.parse().ok()?;
        return Some((c * 100, c * 100 + 99));
    }
    match s.split_once('-') {
        Some((lo, hi)) => Some((lo.trim().parse().ok()?, hi.trim().parse().ok()?)),
        None => s.parse().ok().map(|c| (c, c)),
    }
}

fn health_check(ctx: &mut Ctx, path: &str, v: &Value) -> Option<HealthCheckPlan> {
    let obj = ctx.obj(
        path,
        v,
        &[
            "interval-seconds",
            "healthy-threshold",
            "unhealthy-threshold",
            "call-timeout",
            "call-timeout-ms",
            "path",
            "method",
        ],
        &[],
    )?;
    let interval = obj.u64(ctx, "interval-seconds", "seconds").unwrap_or(5);
    let call_timeout = match obj.get_either(ctx, "call-timeout-ms", "call-timeout") {
        Some((p, v)) => ctx.u64(&p, v, "milliseconds")?,
        None => 1000,
    };
    let method = method(ctx, &obj, http::Method::GET);
    let hpath = obj.str(ctx, "path").unwrap_or("/").to_owned();
    if !hpath.starts_with('/') {
        ctx.err(&join(path, "path"), "must start with `/`");
    }
    let threshold = |ctx: &mut Ctx, key| {
        u32::try_from(obj.u64(ctx, key, "checks").unwrap_or(3)).unwrap_or(u32::MAX)
    };
    Some(HealthCheckPlan {
        interval: Duration::from_secs(interval.max(1)),
        call_timeout: Duration::from_millis(call_timeout),
        method,
        path: hpath,
        healthy_threshold: threshold(ctx, "healthy-threshold"),
        unhealthy_threshold: threshold(ctx, "unhealthy-threshold"),
    })
}

fn default_retry() -> RetryPlan {
    RetryPlan {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(1000),
        retry_statuses: StatusSet(vec![(408, 408), (429, 429), (500, 599)]),
        drop_statuses: StatusSet(vec![(400, 499)]),
        budget: RetryBudgetPlan::default(),
    }
}

/// Extension: retries inside the connector before answering "retry".
fn retry(ctx: &mut Ctx, path: &str, v: &Value) -> Option<RetryPlan> {
    let obj = ctx.obj(
        path,
        v,
        &[
            "max-attempts",
            "initial-backoff",
            "max-backoff",
            "retry-status-codes",
            "drop-status-codes",
            "budget-percent",
            "budget-min-per-second",
        ],
        &[],
    )?;
    let d = default_retry();
    let budget = RetryBudgetPlan {
        percent: obj
            .u64(ctx, "budget-percent", "percent of requests")
            .map_or(d.budget.percent, |n| u32::try_from(n).unwrap_or(u32::MAX)),
        min_per_second: obj
            .u64(ctx, "budget-min-per-second", "retries per second")
            .map_or(d.budget.min_per_second, |n| {
                u32::try_from(n).unwrap_or(u32::MAX)
            }),
    };
    let max_attempts = obj
        .u64(ctx, "max-attempts", "attempts")
        .map_or(d.max_attempts, |n| u32::try_from(n).unwrap_or(u32::MAX));
    if max_attempts == 0 {
        ctx.err(
            &join(path, "max-attempts"),
            "must be at least 1 (1 = no retry)",
        );
    }
    let retry_statuses = match obj.get("retry-status-codes") {
        Some((p, v)) => status_set(ctx, &p, v)?,
        None => d.retry_statuses,
    };
    let drop_statuses = match obj.get("drop-status-codes") {
        Some((p, v)) => status_set(ctx, &p, v)?,
        None => d.drop_statuses,
    };
    Some(RetryPlan {
        max_attempts,
        initial_backoff: duration_ms(ctx, &obj, "initial-backoff", 50),
        max_backoff: duration_ms(ctx, &obj, "max-backoff", 1000),
        retry_statuses,
        drop_statuses,
        budget,
    })
}

fn logging(ctx: &mut Ctx, path: &str, v: &Value) -> Option<LoggingConfig> {
    let obj = ctx.obj(
        path,
        v,
        &[
            "file",
            "enable-console-logging",
            "levels",
            "format",
            "ticker-interval",
        ],
        &[],
    )?;
    let mut cfg = LoggingConfig::default();
    if let Some(f) = obj.str(ctx, "file") {
        cfg.file = Some(PathBuf::from(f));
    }
    if let Some(c) = obj.bool(ctx, "enable-console-logging") {
        cfg.console = c;
    }
    if let Some((p, v)) = obj.get("levels") {
        let mut levels = BTreeMap::new();
        for (lp, module, lv) in ctx.entries(&p, v) {
            let Some(level) = ctx.str(&lp, lv) else {
                continue;
            };
            let level = level.to_ascii_lowercase();
            if !["trace", "debug", "info", "warn", "error", "off"].contains(&level.as_str()) {
                ctx.err(
                    &lp,
                    format!("unknown level `{level}` (trace, debug, info, warn, error, off)"),
                );
                continue;
            }
            levels.insert(module, level);
        }
        cfg.levels = levels.into_iter().collect();
    }
    match obj.str(ctx, "format") {
        None | Some("simple") => {}
        Some("json") => cfg.format = LogFormat::Json,
        Some(other) => ctx.err(
            &join(path, "format"),
            format!("unknown log format `{other}` (simple or json)"),
        ),
    }
    if let Some(t) = obj.u64(ctx, "ticker-interval", "seconds") {
        cfg.ticker = Duration::from_secs(t);
    }
    Some(cfg)
}
