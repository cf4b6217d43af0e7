"""The minimal Django project django-helpdesk runs in for ``benchmarks/service.py``."""
