from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm

from access.selectors import confirmed_device
from access.services import second_factor_check
from hitlproject.errors import DomainError


def code_field(**kwargs) -> forms.CharField:
    return forms.CharField(
        max_length=16,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "size": 8}
        ),
        **kwargs,
    )


class ConsoleAuthenticationForm(AdminAuthenticationForm):
    """The admin's login form; a person with an authenticator app set up also gives its code."""

    otp_token = code_field(
        label="Code from your authenticator app",
        required=False,
        help_text="Only if you have set one up.",
    )

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "token_required": (
            "This account uses a second factor: enter the 6-digit code from your "
            "authenticator app with your password."
        ),
    }

    def clean(self):
        cleaned_data = super().clean()
        user = self.get_user()
        device = confirmed_device(user) if user is not None else None
        if device is not None:
            token = cleaned_data.get("otp_token", "")
            if not token:
                raise forms.ValidationError(
                    self.error_messages["token_required"], code="token_required"
                )
            try:
                # django-otp's login signal handler keeps the device in the session.
                user.otp_device = second_factor_check(
                    request=self.request, user=user, device=device, token=token
                )
            except DomainError as error:
                raise forms.ValidationError(error.message, code="invalid_token") from error
        return cleaned_data


class SecondFactorCodeForm(forms.Form):
    otp_token = code_field(label="6-digit code")
