"""`strategy-rollouts run`: the operator process."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from concurrent.futures import ThreadPoolExecutor

import kopf
from kubernetes import client
from prometheus_client import start_http_server

from strategy_rollouts import __version__
from strategy_rollouts.operator import admission, handlers  # handlers: registers kopf's
from strategy_rollouts.operator.clients.kube import Kube
from strategy_rollouts.operator.context import Context, Settings
from strategy_rollouts.operator.runtime import metrics, readiness
from strategy_rollouts.operator.runtime.leader import Elector, Leadership, Timing, identity, namespace


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="strategy-rollouts", description="Operator for safe trading-strategy rollouts.")
    p.add_argument("--version", action="version", version=__version__)
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the operator against the current KUBECONFIG (or in-cluster)")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[], help="watch these namespaces (repeatable)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace (default)")
    run.add_argument("--prometheus-url", default="http://127.0.0.1:9090", help="default Prometheus address")
    run.add_argument("--prometheus-timeout", type=float, default=10.0, help="seconds per query")
    run.add_argument("--metrics-port", type=int, default=9102, help="/metrics port (0 disables)")
    run.add_argument("--liveness-port", type=int, default=8080, help="/healthz port (0 disables)")
    run.add_argument("--kubeconfig", default=None)
    run.add_argument("--idle-recheck", type=float, default=300.0, help="seconds between checks of objects at rest")
    run.add_argument(
        "--gate-status-refresh",
        type=float,
        default=300.0,
        help="seconds: gate values reach status.gates at least this often (results and counters at once)",
    )
    run.add_argument(
        "--notify-retry-window",
        type=float,
        default=600.0,
        help="seconds a notification is retried before a NotificationFailed Event drops it",
    )
    run.add_argument(
        "--allowed-prometheus",
        action="append",
        default=[],
        metavar="URL_PREFIX",
        help="Prometheus addresses specs may name, besides --prometheus-url (repeatable)",
    )
    run.add_argument(
        "--allowed-webhook",
        action="append",
        default=[],
        metavar="URL_PREFIX",
        help="webhook gate URLs specs may name (repeatable)",
    )
    run.add_argument(
        "--allow-cluster-services",
        action="store_true",
        help="also allow in-cluster Service names (NAME.NS.svc[.cluster.local], one label). With none of the"
        " three allow options, any address is allowed (local development only; the chart sets them)",
    )
    run.add_argument(
        "--peering", default=None, help="kopf peering name (needs kopf's peering CRDs); default standalone"
    )
    run.add_argument("--readiness-port", type=int, default=0, help="/readyz port (0: none; the chart sets 8081)")
    ha = run.add_argument_group("leader election (docs/high-availability.md)")
    ha.add_argument("--leader-elect", action="store_true", help="act only while holding a coordination.k8s.io Lease")
    ha.add_argument("--leader-elect-lease-name", default="strategy-rollouts", help="the Lease's name")
    ha.add_argument("--leader-elect-namespace", default=None, help="the Lease's namespace (default: the pod's)")
    ha.add_argument("--leader-elect-lease-duration", type=float, default=15.0, help="seconds")
    ha.add_argument("--leader-elect-renew-deadline", type=float, default=10.0, help="seconds; stop acting after")
    ha.add_argument("--leader-elect-retry-period", type=float, default=2.0, help="seconds between attempts")
    hook = run.add_argument_group("admission webhook (kopf's WebhookServer; docs/install.md)")
    hook.add_argument("--admission-webhook", type=int, default=0, metavar="PORT", help="serve it on PORT (0: off)")
    hook.add_argument("--admission-addr", default="127.0.0.1", help="listen address (the chart: 0.0.0.0)")
    hook.add_argument("--admission-host", default=None, help="host in a managed configuration's URL")
    hook.add_argument("--admission-cert", default=None, metavar="FILE", help="TLS certificate (PEM)")
    hook.add_argument("--admission-key", default=None, metavar="FILE", help="its private key (PEM)")
    hook.add_argument(
        "--admission-managed",
        default=None,
        metavar="NAME",
        help="kopf writes ValidatingWebhookConfiguration NAME (a url clientConfig; dev clusters)",
    )
    run.add_argument("-v", "--verbose", action="store_true")
    return p


def elector(args: argparse.Namespace, ctx: Context) -> Elector | None:
    """With --leader-elect: the Lease campaign, the fence on every write, a field manager per process."""
    if not args.leader_elect:
        metrics.leader.set(1)
        return None
    timing = Timing(args.leader_elect_lease_duration, args.leader_elect_renew_deadline, args.leader_elect_retry_period)
    if timing.errors():
        raise SystemExit("; ".join(timing.errors()))
    ctx.leader = Leadership(enabled=True, identity=identity(), timing=timing)
    ctx.kube.fence = ctx.leader.check
    ctx.kube.write_timeout_s = timing.request_timeout_s  # answered or given up before the Lease can move
    # The API server names managedFields' manager after the user agent: who wrote what stays visible.
    ctx.kube.api.user_agent = f"strategy-rollouts.{ctx.leader.identity}/{__version__}"
    metrics.leader.set(0)
    return Elector(
        leadership=ctx.leader,
        coordination=client.CoordinationV1Api(ctx.kube.api),
        name=args.leader_elect_lease_name,
        namespace=namespace(args.leader_elect_namespace),
        on_gained=lambda: handlers.sweep_orphans(ctx),
        on_change=lambda leading: metrics.leader.set(1 if leading else 0),
    )


def operator_settings(args: argparse.Namespace) -> Settings:
    return Settings(
        prometheus_url=args.prometheus_url,
        prometheus_timeout_s=args.prometheus_timeout,
        idle_recheck_s=args.idle_recheck,
        gate_status_refresh_s=args.gate_status_refresh,
        notify_retry_window_s=args.notify_retry_window,
        allowed_prometheus=tuple(args.allowed_prometheus),
        allowed_webhooks=tuple(args.allowed_webhook),
        allow_cluster_services=args.allow_cluster_services,
        namespaces=tuple(args.namespace),
    )


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("kubernetes", "urllib3", "aiohttp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not args.verbose:
        # kopf logs every wake-up handler's success at INFO; our own loggers say what matters.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    ctx = Context(kube=Kube.from_environment(args.kubeconfig), settings=operator_settings(args))
    if not ctx.settings.restricted:
        logging.getLogger(__name__).warning(
            "no allow-list (--allowed-prometheus, --allowed-webhook, --allow-cluster-services): specs may name"
            " any address; fine for local development, never in a cluster"
        )
    campaign = elector(args, ctx)
    if args.metrics_port:
        start_http_server(args.metrics_port)
    liveness = f"http://0.0.0.0:{args.liveness_port}/healthz" if args.liveness_port else None
    asyncio.run(operate(args, liveness, ctx, campaign))
    return 0


async def operate(args: argparse.Namespace, liveness: str | None, ctx: Context, campaign: Elector | None) -> None:
    # Every Kubernetes and Prometheus call runs in the default executor: size it for the bounded
    # concurrency the adapters allow (the default is cpus + 4 threads).
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=48, thread_name_prefix="io"))
    webhook = None
    if args.admission_webhook:  # Ready only once it serves (the chart listens on 0.0.0.0: check loopback)
        addr = "127.0.0.1" if args.admission_addr in ("0.0.0.0", "") else args.admission_addr
        webhook = ("::1" if addr == "::" else addr, args.admission_webhook)
    probes = await readiness.serve(ctx.leader, args.readiness_port, webhook=webhook) if args.readiness_port else None
    election = asyncio.create_task(campaign.run(), name="leader-election") if campaign else None
    settings = kopf.OperatorSettings()  # the same object kopf hands to the startup handler
    if args.admission_webhook:
        admission.register()
        settings.admission.server = admission.server(
            args.admission_webhook, args.admission_addr, args.admission_host, args.admission_cert, args.admission_key
        )
        settings.admission.managed = args.admission_managed
    try:
        await kopf.operator(
            settings=settings,
            clusterwide=not args.namespace,
            namespaces=args.namespace or (),
            liveness_endpoint=liveness,
            standalone=args.peering is None,
            peering_name=args.peering,
            memo=kopf.Memo(ctx=ctx),  # the one Context every handler gets (handlers.context)
        )
    finally:
        if election is not None and campaign is not None:
            election.cancel()
            await asyncio.gather(election, return_exceptions=True)
            await campaign.release()  # kopf has stopped every loop: the standby may take over at once
        if probes is not None:
            await probes.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "run":
        return run(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
