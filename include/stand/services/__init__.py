"""The stand's services, started in this order and stopped in reverse. Add one: a module and a line here."""

from stand.services.kube import KubeApi
from stand.services.moto import AwsMoto, Moto, seed_aws, seed_spaces
from stand.services.pgbouncer import NewPgBouncer, PgBouncer
from stand.services.postgres import AirflowMetadata, PostgresPair
from stand.services.redis import Redis
from stand.services.sshd import Sshd
from stand.services.web import UvicornApp, app_env, recorder_env

AWS = AwsMoto("moto", 5, seed_aws, "aws_default", slow_like_aws=True)

SERVICES = [
    PostgresPair(),
    PgBouncer(),  # the old app's pooler, in front of the source
    NewPgBouncer(),  # the new app's, in front of the target
    AWS,
    Moto("spaces", 6, seed_spaces, "do_spaces"),
    UvicornApp(
        "recorder",
        "webhook_recorder.app:app",
        7,
        "webhook_recorder",
        recorder_env(AWS.endpoint, "ferry-stand-webhooks"),
    ),
    # The same application on each side, each through its side's PgBouncer: the old app here, the new app as the
    # Kubernetes stand-in's web pods behind their Service (KubeApi, the new_app connection).
    UvicornApp("old_app", "stand.apps:app", 8, "old_app", app_env("old_app", PgBouncer().dsn)),
    # Where a failed scheduled pre-flight is posted (a chat or paging webhook in a real deployment).
    UvicornApp("alerts", "stand.apps:app", 18, "ferry_alerts", app_env("alerts")),
    Sshd(),
    KubeApi(),
    AirflowMetadata(),
    Redis(),
]
