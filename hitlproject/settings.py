"""One settings module, driven by environment variables.

The defaults run on a laptop with nothing installed (SQLite, a filesystem Celery broker).
``DATABASE_URL`` and ``REDIS_URL`` switch to PostgreSQL and Redis. ``HITL_ENV=production``
refuses to start without the secrets and hosts it needs, and, when it sends messages that
reach people, without the console's address they link to.
"""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


HITL_ENV = env("HITL_ENV", "development")
PRODUCTION = HITL_ENV == "production"
DATA_DIR = Path(env("HITL_DATA_DIR", str(BASE_DIR / "var")))

if PRODUCTION:
    missing = [
        name
        for name in ("DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS", "DATABASE_URL", "REDIS_URL")
        if not env(name)
    ]
    if missing:
        raise ImproperlyConfigured(f"HITL_ENV=production needs {', '.join(missing)}")

SECRET_KEY = env("DJANGO_SECRET_KEY", "insecure-development-key-do-not-use-in-production")
DEBUG = env_flag("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = [
    h for h in env("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h
]
CSRF_TRUSTED_ORIGINS = [o for o in env("DJANGO_CSRF_TRUSTED_ORIGINS").split(",") if o]
CSRF_FAILURE_VIEW = "hitlproject.error_pages.csrf_failure"
# Where a login goes when its next leads nowhere or off the site: the console, not Django's
# /accounts/profile/, which this site does not have.
LOGIN_REDIRECT_URL = "admin:index"
# Where the Procfile's web process listens (bin/start: 127.0.0.1, port 8000, unless set): the
# address seed_demo prints the console at.
WEB_BIND = env("HITL_BIND", "0.0.0.0")
WEB_PORT = env("PORT", "8000")
# What seed_demo printed, kept so that the next run (every start) prints the same working logins
# and keys: readable by its owner alone, next to the embedded database.
DEMO_CREDENTIALS_FILE = DATA_DIR / "demo-credentials.json"

if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_flag("DJANGO_SECURE_SSL_REDIRECT", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(env("DJANGO_SECURE_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

INSTALLED_APPS = [
    "access.apps.ConsoleAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "simple_history",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "axes",
    "access",
    "audit",
    "ledger",
    "approvals",
    "executors",
    "policies",
    "feedback",
    "notifications",
]

# Django's own middleware, each async-capable, so a long poll (hitlproject.longpoll) waits on
# the event loop without a thread. The agent API's views are DRF's (CSRF-exempt, authenticated
# by API key): sessions, login and messages cost them next to nothing, as measured when they
# were skipped for /api/ (0.5 of 48 ms), which is why they are not.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "hitlproject.static_files.AsyncWhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "hitlproject.redirects.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    # Last, as django-axes requires: it turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "hitlproject.urls"
WSGI_APPLICATION = "hitlproject.wsgi.application"
ASGI_APPLICATION = "hitlproject.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL", f"sqlite:///{DATA_DIR / 'db.sqlite3'}"),
        conn_max_age=int(env("DATABASE_CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    )
}
DATABASE_POOL_SIZE = int(env("HITL_DATABASE_POOL_SIZE", "20"))
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the worker write concurrently: WAL lets readers through, IMMEDIATE
    # transactions take the write lock up front instead of failing half-way, and a generous
    # timeout (SQLite's busy timeout) waits for it. Django closes the connection after each
    # request and task; the backend keeps it for the next one (hitlproject.pooled_sqlite3).
    # The test database is a file so a real worker process can share it.
    DATABASES["default"]["ENGINE"] = "hitlproject.pooled_sqlite3"
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test-db.sqlite3")}
elif env_flag("HITL_DATABASE_POOL"):
    # The web server runs each request in a thread of its own (hitlproject.asgi): connections
    # come from a pool, not one kept per thread.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = False
    # A request that finds every connection in use waits this long for one, then is answered
    # 503 with Retry-After (hitlproject.api), never a 500.
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": min(2, DATABASE_POOL_SIZE),
        "max_size": DATABASE_POOL_SIZE,
        "timeout": float(env("HITL_DATABASE_POOL_TIMEOUT_SECONDS", "10")),
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: broker and cache ----------------------------------------------------------------
REDIS_URL = env("REDIS_URL")

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "hitl",
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(DATA_DIR / "cache"),
        }
    }

# --- Celery ---------------------------------------------------------------------------------
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
else:
    # kombu's filesystem transport, each message written whole before it is seen
    # (hitlproject.broker): a broker that needs no server, for the embedded default.
    _broker_dir = Path(env("HITL_BROKER_DIR", str(DATA_DIR / "broker")))
    for _folder in ("queue", "processed", "control"):
        (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "hitl-filesystem://localhost//"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
        # An idle worker looks for messages 50 times a second (about 1% of a core): a task waits
        # 10 ms for it on average, where 0.1 s cost 50 ms.
        "polling_interval": 0.02,
    }
CELERY_TASK_DEFAULT_QUEUE = env("HITL_CELERY_QUEUE", "hitl")
# Callbacks and the webhook executor's requests go to queues of their own (hitl.callbacks,
# hitl.webhooks), served by their own workers: see hitlproject.celery.
CELERY_TASK_ROUTES = ("hitlproject.celery.route_task",)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's Django fixup closes the database connection before and after every task unless
# told to reuse it, so each task would connect anew (a PostgreSQL backend started for it: more
# time than an execution's statements). A worker keeps its connections as the web server does
# instead, closing one past CONN_MAX_AGE or found unusable (hitlproject.celery).
CELERY_DB_REUSE_MAX = 1000
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
# How often proposals past their review window are expired. Only this sweep (or a late act)
# expires one, never a read: until it runs, a page or the API shows it waiting with its window
# closed. Each run with nothing overdue is one indexed read.
EXPIRY_SWEEP_SECONDS = max(1, int(env("HITL_EXPIRY_SWEEP_SECONDS", "10")))  # 0: sent non-stop
CELERY_BEAT_SCHEDULE = {
    "expire-overdue-proposals": {
        "task": "approvals.expire_overdue_proposals",
        "schedule": timedelta(seconds=EXPIRY_SWEEP_SECONDS),
    },
    "requeue-stalled-proposals": {
        "task": "approvals.requeue_stalled_proposals",
        "schedule": timedelta(seconds=int(env("HITL_STALL_SWEEP_SECONDS", "60"))),
    },
    "purge-idempotency-records": {
        "task": "approvals.purge_idempotency_records",
        "schedule": timedelta(hours=1),
    },
    "resend-due-callback-events": {
        "task": "feedback.resend_due_callback_events",
        "schedule": timedelta(seconds=60),
    },
    "resend-due-notifications": {
        "task": "notifications.resend_due_notifications",
        "schedule": timedelta(seconds=60),
    },
    # Reminders at half time and escalations at the deadline: at most this late.
    "sweep-decision-deadlines": {
        "task": "notifications.sweep_deadlines",
        "schedule": timedelta(seconds=float(env("HITL_DEADLINE_SWEEP_SECONDS", "15"))),
    },
    # Digests: at most this much later than due (a route's digest is every 1 minute or more).
    "send-due-digests": {
        "task": "notifications.send_due_digests",
        "schedule": timedelta(seconds=float(env("HITL_DIGEST_SWEEP_SECONDS", "30"))),
    },
    "seal-audit-chain": {
        "task": "audit.seal_chain",
        "schedule": timedelta(seconds=60),
    },
    "recommend-autonomy-changes": {
        "task": "feedback.recommend_autonomy_changes",
        "schedule": timedelta(hours=24),
    },
}
# A submission waits at most this long for the campaigns it names (PostgreSQL; SQLite waits
# for its write lock up to the database timeout); held up longer, it is answered 503.
SUBMISSION_LOCK_TIMEOUT = timedelta(seconds=float(env("HITL_SUBMISSION_LOCK_TIMEOUT_SECONDS", "5")))
# The webhook executor: the first retry after this many seconds, doubling (up to 10 minutes
# apart); failed after this many attempts.
WEBHOOK_RETRY_SECONDS = float(env("HITL_WEBHOOK_RETRY_SECONDS", "10"))
WEBHOOK_MAX_ATTEMPTS = int(env("HITL_WEBHOOK_MAX_ATTEMPTS", "5"))
# At most this many of the webhook executor's requests to one account's endpoint at a time: a
# slow endpoint holds no more of the webhook workers (HITL_WEBHOOK_CONCURRENCY) than that.
WEBHOOK_REQUESTS_PER_ACCOUNT = int(env("HITL_WEBHOOK_REQUESTS_PER_ACCOUNT", "2"))
# Every outbound request (callbacks, the webhook executor): the whole exchange within this
# many seconds, connecting within the second figure; only to public addresses, unless private
# ones are allowed (for development against endpoints on one's own machine).
OUTBOUND_DEADLINE = float(env("HITL_OUTBOUND_DEADLINE_SECONDS", "10"))
OUTBOUND_CONNECT = float(env("HITL_OUTBOUND_CONNECT_SECONDS", "3"))
OUTBOUND_ALLOW_PRIVATE = env_flag("HITL_OUTBOUND_ALLOW_PRIVATE")
# Agents' callbacks: the first retry after this many seconds, doubling up to an hour apart;
# given up after this many attempts (8: about two hours of trying).
CALLBACK_RETRY_SECONDS = float(env("HITL_CALLBACK_RETRY_SECONDS", "30"))
CALLBACK_MAX_ATTEMPTS = int(env("HITL_CALLBACK_MAX_ATTEMPTS", "8"))
# Requests under way at once to one agent's callback URL: a slow or hanging receiver holds no
# more workers than that, and every other agent's events still find workers free.
CALLBACK_REQUESTS_PER_AGENT = int(env("HITL_CALLBACK_REQUESTS_PER_AGENT", "2"))

# --- Reaching the people who decide (notifications) ------------------------------------------
# Links in messages point here: the console as its users reach it. Empty: where this
# machine's web process answers (HITL_BIND, PORT), as seed_demo prints it.
CONSOLE_URL = env("HITL_CONSOLE_URL", "").rstrip("/")
# Email through Django's own machinery. Without EMAIL_HOST (a laptop, the demo) messages are
# written as files to var/sent-mail, and the console says so, rather than sent nowhere.
EMAIL_HOST = env("EMAIL_HOST", "")
EMAIL_PORT = int(env("EMAIL_PORT", "25"))
EMAIL_HOST_USER = env("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_flag("EMAIL_USE_TLS")
EMAIL_TIMEOUT = OUTBOUND_DEADLINE
# The Date header in the platform's own zone (TIME_ZONE, UTC: "+0000"), not "-0000", which
# says the sender does not know its zone (RFC 5322, 3.3) and which mail readers show oddly.
EMAIL_USE_LOCALTIME = True
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "HITL approvals <approvals@localhost>")
if EMAIL_HOST:
    EMAIL_BACKEND = "hitlproject.mail.EmailBackend"  # Django's, the exchange bounded as a whole
else:
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = str(DATA_DIR / "sent-mail")
# Slack: a bot token to post and update messages, the signing secret to verify button presses.
SLACK_BOT_TOKEN = env("SLACK_BOT_TOKEN", "")
SLACK_SIGNING_SECRET = env("SLACK_SIGNING_SECRET", "")
SLACK_API_URL = env("SLACK_API_URL", "https://slack.com/api/")
# A press on Slack decides for a person whose group must use a second factor (which the console
# asks of them at every login) only where Slack's own sign-in is taken for one: set it when the
# workspace itself requires two-factor authentication (or single sign-on with it) of everyone.
SLACK_SIGN_IN_IS_SECOND_FACTOR = env_flag("SLACK_SIGN_IN_IS_SECOND_FACTOR")
# In production, a message that reaches someone (through a mail server or Slack) links to the
# console as its users reach it: without HITL_CONSOLE_URL its links would point at this
# machine's own address (127.0.0.1), which no reader's browser opens.
if PRODUCTION and (EMAIL_HOST or SLACK_BOT_TOKEN):
    reaching = " and ".join(name for name in ("EMAIL_HOST", "SLACK_BOT_TOKEN") if globals()[name])
    if not CONSOLE_URL.startswith(("https://", "http://")):
        raise ImproperlyConfigured(
            f"HITL_ENV=production with {reaching} set needs HITL_CONSOLE_URL, the console's "
            "address as its users reach it (such as https://hitl.example.com): the links in "
            "emails and Slack messages go there, and without it they would point at this "
            "machine (http://127.0.0.1)."
        )
# Google Ads (executors.google_ads): the API's gRPC endpoint and the OAuth token endpoint its
# refresh tokens are exchanged at. Tests point both at local fakes; a local endpoint
# (localhost, 127.0.0.1, [::1]) is reached over gRPC's local credentials, any other over TLS.
GOOGLE_ADS_API_ENDPOINT = env("GOOGLE_ADS_API_ENDPOINT", "googleads.googleapis.com")
GOOGLE_ADS_TOKEN_URI = env("GOOGLE_ADS_TOKEN_URI", "https://oauth2.googleapis.com/token")
GOOGLE_ADS_DEADLINE = float(env("GOOGLE_ADS_DEADLINE", "30"))
# A message that could not be sent is tried again after this many seconds, doubling, up to
# this many attempts.
NOTIFICATION_RETRY_SECONDS = float(env("HITL_NOTIFICATION_RETRY_SECONDS", "30"))
NOTIFICATION_MAX_ATTEMPTS = int(env("HITL_NOTIFICATION_MAX_ATTEMPTS", "6"))
# A person told that an execution failed is told at once; of the others that fail within this
# many seconds, in one message listing them all when that time is up (as alerting tools group
# alerts: a broken endpoint refusing fifty bids makes two messages, not fifty). 0: each at once.
NOTIFICATION_FAILURES_GROUPED_SECONDS = float(env("HITL_FAILURES_GROUPED_SECONDS", "300"))
# A claim ("I'll take it") lapses after this many minutes.
CLAIM_MINUTES = int(env("HITL_CLAIM_MINUTES", "30"))

# History is read in the admin, never restored from it (audit.admin.AuditedHistoryAdmin).
SIMPLE_HISTORY_REVERT_DISABLED = True

# --- Auth, i18n, static ---------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# The console's login: django-axes checks every login first, refusing a locked-out person and
# address.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# This many failed logins (a wrong password, or a wrong second-factor code) for one username from
# one address lock that username out from that address for the cool-off; a success resets.
AXES_FAILURE_LIMIT = int(env("HITL_LOGIN_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = timedelta(minutes=int(env("HITL_LOGIN_COOLOFF_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "access.views.lockout_response"
AXES_CLIENT_IP_CALLABLE = "access.addresses.client_ip_address"
AXES_SENSITIVE_PARAMETERS = ["username", "ip_address", "otp_token", "csrfmiddlewaretoken"]
# Reverse proxies in front of the web server, each appending to X-Forwarded-For: 0 (the default)
# believes no header and takes the connection's address.
TRUSTED_PROXY_COUNT = int(env("HITL_TRUSTED_PROXY_COUNT", "0"))
# Second factors (TOTP), for the groups an administrator names (access.SecondFactorRequirement).
OTP_TOTP_ISSUER = "HITL approvals"
OTP_ADMIN_HIDE_SENSITIVE_DATA = True

LANGUAGE_CODE = "en-us"
# Dates and times shown as the console's pages write them (hitlproject/formats).
FORMAT_MODULE_PATH = ["hitlproject.formats"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # A refused request (4xx) is one line; a server error keeps its traceback.
    "filters": {"refusals_on_one_line": {"()": "hitlproject.log_filters.RefusalsOnOneLine"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "filters": ["refusals_on_one_line"]}
    },
    "root": {"handlers": ["console"], "level": env("HITL_LOG_LEVEL", "INFO")},
    # Every outbound request is recorded where it matters (an attempt, a callback's log); a
    # lockout, on its record in the console.
    "loggers": {"httpx": {"level": "WARNING"}, "axes": {"level": "WARNING"}},
}

# --- Agent API ------------------------------------------------------------------------------
# Largest request body the API reads; a single proposal is held to a smaller limit in its view.
API_MAX_BODY_BYTES = int(env("HITL_API_MAX_BODY_BYTES", str(256 * 1024)))
API_MAX_BATCH_BODY_BYTES = int(env("HITL_API_MAX_BATCH_BODY_BYTES", str(16 * 1024 * 1024)))
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BATCH_BODY_BYTES
# A request body of which nothing more arrives for this long is answered 408, its connection
# closed (hitlproject.asgi_body), as a proxy's client_body_timeout would (nginx's is 60 s).
REQUEST_BODY_IDLE_SECONDS = int(env("HITL_REQUEST_BODY_IDLE_SECONDS", "60"))
if REQUEST_BODY_IDLE_SECONDS < 1:  # 0 would answer every request with a body 408
    raise ImproperlyConfigured(
        f"HITL_REQUEST_BODY_IDLE_SECONDS is {REQUEST_BODY_IDLE_SECONDS}: it must be 1 or more."
    )
# A bulk decision in the console posts one field per selected proposal (Django's default, 1,000,
# would refuse selecting a thousand); still bounded.
DATA_UPLOAD_MAX_NUMBER_FIELDS = 10_000
API_MAX_BATCH_SIZE = 1000
# API requests under way at once in one web process, in all and per agent (by Authorization
# header); beyond, 503 busy at once (hitlproject.inflight). Sized to the connection pool: more
# would only wait for a connection. A long poll counts while it reads, not while it waits.
API_MAX_IN_FLIGHT = int(env("HITL_API_MAX_IN_FLIGHT", str(3 * DATABASE_POOL_SIZE)))
API_MAX_IN_FLIGHT_PER_AGENT = int(
    env("HITL_API_MAX_IN_FLIGHT_PER_AGENT", str(2 * DATABASE_POOL_SIZE))
)
# Long polls (?wait=) wait on the event loop; their reads take turns on this many threads per
# web process (so at most this many of its database connections), however many are waiting.
LONG_POLL_READERS = int(env("HITL_LONG_POLL_READERS", "4"))
# How many of those threads one agent's reads may hold at once (the others take turns): an
# agent's many waits woken together leave the rest to other agents' reads.
LONG_POLL_READS_PER_AGENT = max(
    1, int(env("HITL_LONG_POLL_READS_PER_AGENT", str(max(1, LONG_POLL_READERS // 2))))
)
# The most long polls one agent may have waiting in a web process at once; beyond it, 429.
LONG_POLL_MAX_WAITS_PER_AGENT = int(env("HITL_LONG_POLL_MAX_WAITS_PER_AGENT", "100"))
# The most long polls a web process takes at once from all agents before they wait (their
# first read still to come, in turn on those threads); beyond, 503 busy at once. Above one
# agent's share, so that one agent's burst is told 429 too_many_waits past its share.
LONG_POLL_MAX_PENDING = int(
    env("HITL_LONG_POLL_MAX_PENDING", str(2 * LONG_POLL_MAX_WAITS_PER_AGENT))
)
# A web process's wake-ups subscription (Redis) PINGs after this many quiet seconds and is
# taken for lost (and renewed) when nothing comes back within twice as long again.
WAKEUPS_HEARTBEAT_SECONDS = float(env("HITL_WAKEUPS_HEARTBEAT_SECONDS", "5"))
# The most creative text (headlines, bodies, calls to action, in characters) one request may
# send: every creative is read for brand guidelines, look-alike letters folded, at a cost that
# grows with its text. One batch of 50 creatives at their longest (150 + 2,000 + 50 each) fits.
API_MAX_CREATIVE_TEXT_CHARS = int(env("HITL_API_MAX_CREATIVE_TEXT_CHARS", "250000"))
# The most free text (rationales, supporting data as compact JSON, external references, in
# characters) one request may send: all of it is written, with its history, while the campaigns
# it names are locked against others' submissions. A batch of 1,000 proposals with 2,000
# characters of each fits, as does one proposal at its longest (10,000 + 64 KiB + 200).
API_MAX_TEXT_CHARS = int(env("HITL_API_MAX_TEXT_CHARS", "2000000"))
IDEMPOTENCY_KEY_TTL = timedelta(hours=int(env("HITL_IDEMPOTENCY_TTL_HOURS", "48")))
# A proposal left submitted or approved this long has lost its task; the sweeper resends it.
PROPOSAL_STALL_AFTER = timedelta(seconds=int(env("HITL_STALL_AFTER_SECONDS", "60")))
# An execution task carries out, in the same transaction, up to this many other approved
# proposals whose own task has not run yet (executors.tasks); 0: each waits for its own.
EXECUTION_TAKES_ALONG = int(env("HITL_EXECUTION_TAKES_ALONG", "99"))
# An execution task carries out those of its proposals that must run alone for about this many
# seconds, then sends the rest on in a message of their own, behind those queued meanwhile.
EXECUTION_ALONE_SECONDS = float(env("HITL_EXECUTION_ALONE_SECONDS", "5"))
# Review window when no policy names one.
DEFAULT_REVIEW_WINDOW = timedelta(hours=72)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["approvals.authentication.AgentAPIKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["approvals.authentication.IsAgent"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["hitlproject.parsers.SafeJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_CLASSES": ["approvals.authentication.AgentRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "agent": env("HITL_API_THROTTLE_RATE", "6000/min"),
        # Refused API keys per client address (approvals.authentication).
        "auth_failures": env("HITL_API_AUTH_FAILURE_RATE", "30/min"),
    },
    "EXCEPTION_HANDLER": "hitlproject.api.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "HITL marketing approvals — agent API",
    "DESCRIPTION": (
        "Agents propose marketing actions; policies decide which run at once and which wait "
        "for a human. Authenticate with `Authorization: Bearer <api key>`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "GET_LIB_DOC_EXCLUDES": "hitlproject.schema.doc_excludes",
    # Each vocabulary the answers use, named for what it is ("status" and "outcome" name two
    # each: a proposal's and an execution's, a decision's and a verdict's).
    "ENUM_NAME_OVERRIDES": {
        "StatusEnum": "hitlproject.vocabulary.ProposalStatus",
        "ExecutionStatusEnum": "approvals.models.ExecutionStatus",
        "VerdictOutcomeEnum": "hitlproject.vocabulary.VerdictOutcome",
        "DecisionOutcomeEnum": "approvals.models.DecisionOutcome",
        "RejectionReasonEnum": "approvals.models.RejectionReason",
        "FeedbackKindEnum": "feedback.models.FeedbackKind",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "hitlproject.schema.document_refusals",
    ],
}
