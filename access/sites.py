from django.contrib import admin
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.views import redirect_to_login
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect

from access import views
from access.forms import ConsoleAuthenticationForm
from access.selectors import second_factor_owed


class ConsoleAdminSite(admin.AdminSite):
    """The review console. A person in a group that must use a second factor is not let in
    on their password alone: they set up an authenticator app, or enter its code, first."""

    site_header = "HITL approvals"
    site_title = "HITL approvals"
    index_title = "Review console"
    # The queue needs the width more than a second copy of the home page's menu.
    enable_nav_sidebar = False
    # Nothing set reads as the console's pages write it elsewhere ("—"), not Django's "-".
    empty_value_display = "—"

    login_form = ConsoleAuthenticationForm
    login_template = "access/login.html"

    def has_permission(self, request) -> bool:
        return super().has_permission(request) and not second_factor_owed(request.user)

    @method_decorator(never_cache)
    @login_not_required
    def login(self, request, extra_context=None):
        if request.method == "GET" and second_factor_owed(request.user):
            next_url = request.GET.get(REDIRECT_FIELD_NAME) or reverse(
                "admin:index", current_app=self.name
            )
            return redirect_to_login(
                next_url, reverse("admin:second_factor", current_app=self.name)
            )
        return super().login(request, extra_context)

    def get_urls(self):
        second_factor = csrf_protect(never_cache(self.second_factor))
        return [
            path("second-factor/", second_factor, name="second_factor"),
            *super().get_urls(),
        ]

    def second_factor(self, request):
        return views.second_factor(request, admin_site=self)
