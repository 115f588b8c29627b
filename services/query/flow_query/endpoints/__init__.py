"""The query API's routes, a module for each thing it reads: postings (`transactions`), statements,
daily and point-in-time balances (`balances`), accounts and the event catalogue (`events`). Each gives
an APIRouter for the app's Authenticator; create_app puts their routes on the app."""
