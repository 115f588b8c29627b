"""The ingest API's routes, a module for each thing it manages: postings (`transactions`), the event
catalogue (`events`) and the account registry (`accounts`). Each gives an APIRouter for the app's
Authenticator; create_app puts their routes on the app."""
