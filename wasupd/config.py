"""Configuration: one TOML file parsed once into frozen, typed dataclasses.

Every key is optional; `etc/wasupd.toml` documents each with its default. An unknown key or a
value of the wrong type is a `ConfigError` naming the key path (`browser.stop_timeout`) and the
expected type. Paths left empty are resolved by `resolve_paths` to the defaults of `wasupd.paths`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import tomli_w

from wasupd import paths
from wasupd.errors import ConfigError

LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["auto", "json", "console"]
BrowserBuild = Literal["full", "headless-shell"]
SandboxMode = Literal["auto", "on", "off"]

# A current desktop Chrome on Linux; WhatsApp Web treats unusual agents (HeadlessChrome) differently.
DEFAULT_USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/156.0.0.0 Safari/537.36"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class DaemonConfig:
    """[daemon]: the control socket, directories and logging."""

    socket: str = ""
    socket_mode: int = 0o660
    socket_group: str = "wasupd"
    allow_users: list[str] = field(default_factory=list)
    allow_groups: list[str] = field(default_factory=list)
    state_dir: str = ""
    runtime_dir: str = ""
    log_level: LogLevel = "info"
    log_format: LogFormat = "auto"
    max_message_bytes: int = 1024 * 1024
    shutdown_timeout: float = 30.0
    start_stagger: float = 0.5
    retention_days: float = 90.0
    host_id: str = ""  # this host's name in a fleet; empty: the hostname


@dataclass(frozen=True, slots=True, kw_only=True)
class BrowserConfig:
    """[browser]: which Chromium, where it points, and its timeouts."""

    executable: str = ""
    build: BrowserBuild = "full"
    url: str = "https://web.whatsapp.com/"
    extra_args: list[str] = field(default_factory=list)
    user_agent: str = DEFAULT_USER_AGENT
    proxy: str = ""
    sandbox: SandboxMode = "auto"
    start_timeout: float = 60.0
    stop_timeout: float = 10.0
    hang_timeout: float = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitsConfig:
    """[limits]: admission control and per-session resource watchdogs (0 disables a watchdog)."""

    max_sessions: int = 50
    memory_mib: int = 1536
    memory_soft_mib: int = 0  # 0: 80% of memory_mib (watchdogs.policy.SOFT_SHARE)
    reclaim_interval: float = 300.0
    fds: int = 4096
    processes: int = 64
    cpu_percent: float = 0.0
    host_memory_reserve_mib: int = 1024
    check_interval: float = 10.0
    max_concurrent_starts: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class RestartConfig:
    """[restart]: exponential backoff with a cap, reset after a stable period, give up after N in T."""

    backoff_initial: float = 1.0
    backoff_factor: float = 2.0
    backoff_max: float = 300.0
    stable_after: float = 120.0
    max_failures: int = 5
    failure_window: float = 900.0


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthConfig:
    """[health]: the liveness probe that catches "connected but silently dead"."""

    silence_timeout: float = 300.0
    probe_interval: float = 60.0
    probe_timeout: float = 20.0
    self_ping: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class QrConfig:
    """[qr]: linking limits so a loop cannot get a number flagged."""

    max_per_hour: int = 5
    max_rotations: int = 1
    pairing_code_refresh: float = 180.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ProfilesConfig:
    """[profiles]: sealed profile archives, checkpoints and the live-profile quota."""

    key_file: str = ""
    checkpoint_interval: float = 900.0
    quota_mib: int = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class SendConfig:
    """[send]: outbox retries and anti-ban pacing (all per session)."""

    pacing: bool = True
    per_minute: int = 20
    per_hour: int = 500
    per_day: int = 5000
    new_number_per_day: int = 500
    young_number_per_day: int = 1500
    old_number_per_day: int = 3000
    jitter_min: float = 3.0
    jitter_max: float = 7.0
    window: str = ""
    typing: bool = False
    max_attempts: int = 5
    retry_backoff: float = 5.0
    max_text_bytes: int = 65536


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhooksConfig:
    """[webhooks]: signed POSTs of events to one URL, with a durable retry queue."""

    url: str = ""
    secret_file: str = ""
    events: list[str] = field(default_factory=lambda: ["message", "ack", "state"])
    timeout: float = 10.0
    max_attempts: int = 12
    backoff_initial: float = 2.0
    backoff_max: float = 3600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsConfig:
    """[metrics]: an HTTP endpoint for Prometheus (off unless `listen` is set)."""

    listen: str = ""  # "HOST:PORT", e.g. "127.0.0.1:9464" or "[::1]:9464"; empty: off


@dataclass(frozen=True, slots=True, kw_only=True)
class OptoutConfig:
    """[optout]: inbound keywords that put a contact on the suppression list."""

    keywords: list[str] = field(default_factory=lambda: ["STOP", "UNSUBSCRIBE"])
    confirmation: str = ""  # sent once to a contact who opts out; empty: nothing is sent


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaConfig:
    """[media]: which received files are fetched into the media store as they arrive."""

    download: Literal["none", "documents", "all"] = "documents"
    max_download_mib: int = 64  # larger files stay with WhatsApp (`wasupctl media get` fetches)


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreConfig:
    """[store]: where sessions, messages and the rest of the daemon's records live."""

    # "postgresql://USER:PASSWORD@HOST:PORT/DATABASE" (libpq's URL form); empty: the SQLite
    # file under the state directory.
    url: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetConfig:
    """[fleet]: several hosts on one PostgreSQL ([store] url), sessions owned by lease."""

    lease_timeout: float = 30.0  # seconds (database clock) before another host takes over
    profiles_dir: str = ""  # sealed profiles every host reads and writes; empty: state dir


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The whole configuration; build it with `load_config`."""

    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    browser: BrowserConfig = field(default_factory=BrowserConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    restart: RestartConfig = field(default_factory=RestartConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    qr: QrConfig = field(default_factory=QrConfig)
    profiles: ProfilesConfig = field(default_factory=ProfilesConfig)
    send: SendConfig = field(default_factory=SendConfig)
    webhooks: WebhooksConfig = field(default_factory=WebhooksConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    optout: OptoutConfig = field(default_factory=OptoutConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    fleet: FleetConfig = field(default_factory=FleetConfig)

    @property
    def socket_path(self) -> Path:
        """The control socket (resolved)."""
        return Path(self.daemon.socket)

    @property
    def state_path(self) -> Path:
        """Directory of the database and sealed archives (resolved)."""
        return Path(self.daemon.state_dir)

    @property
    def runtime_path(self) -> Path:
        """Directory of the socket and live profiles (resolved)."""
        return Path(self.daemon.runtime_dir)

    @property
    def state(self) -> paths.StateLayout:
        """The files and directories under the state directory."""
        shared = Path(self.fleet.profiles_dir) if self.fleet.profiles_dir else None
        return paths.StateLayout(self.state_path, shared)

    @property
    def runtime(self) -> paths.RuntimeLayout:
        """The files and directories under the runtime directory."""
        return paths.RuntimeLayout(self.runtime_path)


# What SIGHUP can change in a running daemon (everything else needs a restart): these whole
# sections, and these keys of [daemon]. `LIVE_RELOADABLE` and `apply_live` are derived from it.
LIVE_SECTIONS = ("limits", "restart", "health", "qr", "send", "optout", "media")
LIVE_DAEMON_KEYS = ("log_level", "allow_users", "allow_groups", "retention_days")
LIVE_RELOADABLE = frozenset(
    {f"daemon.{key}" for key in LIVE_DAEMON_KEYS}
    | {
        f"{section}.{f.name}"
        for section in LIVE_SECTIONS
        for f in dataclasses.fields(typing.get_type_hints(Config)[section])
    }
)


def apply_live(old: Config, new: Config) -> Config:
    """`old` with the live-reloadable parts of `new` (the rest waits for a restart)."""
    daemon = dataclasses.replace(
        old.daemon, **{key: getattr(new.daemon, key) for key in LIVE_DAEMON_KEYS}
    )
    sections = {section: getattr(new, section) for section in LIVE_SECTIONS}
    return dataclasses.replace(old, daemon=daemon, **sections)


_WINDOW_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$")


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is list:
        return "a list of strings"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(
        tp, str(tp)
    )


def _coerce(path: str, tp: Any, value: Any) -> Any:
    """Check `value` against the field type `tp`; return it (ints widen to floats)."""
    origin = typing.get_origin(tp)
    ok: bool
    if origin is Literal:
        ok = value in typing.get_args(tp)
    elif origin is list:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    elif tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok:
            value = float(value)
    elif tp is str:
        ok = isinstance(value, str)
    else:  # pragma: no cover - a field type this parser does not know is a programming error
        raise TypeError(f"unsupported config type {tp!r} at {path}")
    if not ok:
        raise ConfigError(
            f"{path}: expected {_type_name(tp)}, got {value!r}", key=path, expected=_type_name(tp)
        )
    if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
        raise ConfigError(f"{path}: must not be negative, got {value!r}", key=path)
    return value


def _build(cls: type[Any], prefix: str, table: Any) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"{prefix}: expected a table, got {table!r}", key=prefix)
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in table:
        if key not in known:
            raise ConfigError(
                f"{prefix}.{key}: unknown key (known keys: {', '.join(sorted(known))})",
                key=f"{prefix}.{key}",
            )
    kwargs = {k: _coerce(f"{prefix}.{k}", hints[k], v) for k, v in table.items()}
    return cls(**kwargs)


def _validate(cfg: Config) -> None:
    """Checks that span one value's meaning, not just its type."""
    if not 0 < cfg.daemon.socket_mode <= 0o777:
        raise ConfigError(
            "daemon.socket_mode: expected a mode such as 0o660", key="daemon.socket_mode"
        )
    if cfg.daemon.max_message_bytes < 1024:
        raise ConfigError(
            "daemon.max_message_bytes: must be at least 1024", key="daemon.max_message_bytes"
        )
    if cfg.send.window and not _WINDOW_RE.match(cfg.send.window):
        raise ConfigError(
            f"send.window: expected 'HH:MM-HH:MM' (e.g. '06:00-22:00'), got {cfg.send.window!r}",
            key="send.window",
        )
    if cfg.send.jitter_min > cfg.send.jitter_max:
        raise ConfigError("send.jitter_min: must not exceed send.jitter_max", key="send.jitter_min")
    if cfg.daemon.retention_days != 0 and cfg.daemon.retention_days < 2:
        raise ConfigError(
            "daemon.retention_days: must be 0 (keep everything) or at least 2 (pacing counts"
            " the last day of sends)",
            key="daemon.retention_days",
        )
    if cfg.metrics.listen:
        listen_address(cfg.metrics.listen)  # raises ConfigError naming the key
    if cfg.media.max_download_mib < 0:
        raise ConfigError(
            "media.max_download_mib: must be 0 (fetch none) or more", key="media.max_download_mib"
        )
    lim = cfg.limits
    if lim.memory_soft_mib and lim.memory_mib and lim.memory_soft_mib > lim.memory_mib:
        raise ConfigError(
            f"limits.memory_soft_mib: must not exceed limits.memory_mib ({lim.memory_mib});"
            " set it lower, or to 0 for the default share of memory_mib",
            key="limits.memory_soft_mib",
        )
    if cfg.store.url and not cfg.store.url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(
            "store.url: expected a PostgreSQL URL such as"
            " 'postgresql://wasupd:PASSWORD@db.example:5432/wasupd', or empty for SQLite",
            key="store.url",
        )
    if cfg.fleet.lease_timeout < MIN_LEASE_TIMEOUT:
        raise ConfigError(
            f"fleet.lease_timeout: must be at least {MIN_LEASE_TIMEOUT:g} seconds (renewals"
            " come six times per lease, and a host stops at half of it)",
            key="fleet.lease_timeout",
        )
    if cfg.fleet.profiles_dir and not Path(cfg.fleet.profiles_dir).is_absolute():
        raise ConfigError(
            "fleet.profiles_dir: must be an absolute path (a directory every host mounts)",
            key="fleet.profiles_dir",
        )
    if cfg.restart.backoff_factor < 1:
        raise ConfigError(
            "restart.backoff_factor: must be at least 1", key="restart.backoff_factor"
        )


MIN_LEASE_TIMEOUT = 2.0


def listen_address(value: str) -> tuple[str, int]:
    """`HOST:PORT` (`[v6]:PORT` for IPv6) of `metrics.listen`; ConfigError when malformed."""
    host, sep, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            f"metrics.listen: expected HOST:PORT such as '127.0.0.1:9464' or '[::1]:9464',"
            f" got {value!r}",
            key="metrics.listen",
        )
    return host, int(port)


def parse_config(data: dict[str, Any]) -> Config:
    """Build a `Config` from an already-parsed TOML document, validating every key."""
    hints = typing.get_type_hints(Config)
    sections = {f.name for f in dataclasses.fields(Config)}
    kwargs: dict[str, Any] = {}
    for name, table in data.items():
        if name not in sections:
            raise ConfigError(
                f"{name}: unknown section (known sections: {', '.join(sorted(sections))})", key=name
            )
        kwargs[name] = _build(hints[name], name, table)
    cfg = resolve_paths(Config(**kwargs))
    _validate(cfg)
    return cfg


def resolve_paths(cfg: Config) -> Config:
    """Fill empty path keys with the root or XDG defaults of `wasupd.paths`."""
    d = cfg.daemon
    runtime = d.runtime_dir or str(paths.runtime_dir())
    daemon = dataclasses.replace(
        d,
        runtime_dir=runtime,
        state_dir=d.state_dir or str(paths.state_dir()),
        socket=d.socket or str(Path(runtime) / "wasupd.sock"),
        host_id=d.host_id or socket.gethostname(),
    )
    profiles = dataclasses.replace(
        cfg.profiles, key_file=cfg.profiles.key_file or str(paths.default_key_file())
    )
    return dataclasses.replace(cfg, daemon=daemon, profiles=profiles)


def config_file_from_env(explicit: str | None) -> Path:
    """`--config`, else `WASUPD_CONFIG`, else the default path for this user."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("WASUPD_CONFIG", "")
    return Path(env) if env else paths.default_config_file()


def load_config(path: Path, *, missing_ok: bool = True) -> Config:
    """Read and validate `path`. A missing file gives the defaults when `missing_ok`."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if missing_ok:
            return parse_config({})
        raise ConfigError(f"{path}: config file not found", key="") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}", key="") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}", key="") from exc
    return parse_config(data)


def to_dict(cfg: Config) -> dict[str, Any]:
    """The effective configuration as plain data (for `--print-config` and `daemon.status`)."""
    return dataclasses.asdict(cfg)


def to_toml(cfg: Config) -> str:
    """The effective configuration as TOML text."""
    return tomli_w.dumps(to_dict(cfg))


def changed_keys(old: Config, new: Config) -> list[str]:
    """Dotted key paths whose value differs between two configs."""
    out: list[str] = []
    a, b = to_dict(old), to_dict(new)
    for section, table in a.items():
        for key, value in table.items():
            if b[section][key] != value:
                out.append(f"{section}.{key}")
    return out
