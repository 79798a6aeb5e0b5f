from django.urls import path

from orders_site import views

urlpatterns = [
    path("", views.hello),
    path("ping", views.ping),
    path("orders", views.orders),
    path("api/orders", views.Orders.as_view()),
    path("api/me", views.Me.as_view()),
]
