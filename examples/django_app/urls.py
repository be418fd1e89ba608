from __future__ import annotations

from django.urls import path

from django_app import views

urlpatterns = [
    path("login/", views.login, name="login"),
    path("connect/<str:integration>/", views.connect, name="connect"),
    path("oauth/callback/", views.callback, name="callback"),
]
