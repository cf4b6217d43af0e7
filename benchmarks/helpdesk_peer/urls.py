"""URLs of the benchmark project: django-helpdesk's own (its mail templates link to them)."""

from django.urls import include, path

urlpatterns = [path("helpdesk/", include("helpdesk.urls", namespace="helpdesk"))]
