"""The web app and REST API (`leukodx serve`): FastAPI routes over the package, SQLAlchemy storage."""
