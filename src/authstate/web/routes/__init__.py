"""The service's routers, one module per group of endpoints; ``web/app.py`` includes them."""
