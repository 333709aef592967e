"""`canary dashboard`: a live web view of every managed Service.

read     pure: status annotation and history ConfigMap, read defensively
views    pure: what each page shows (rows, step strip, revisions, events)
charts   pure: one chart per metric of a revision, against its threshold
feeds    the watches (one set per process) and what the user may not read
stream   fan-out of changes to every open tab, by server-sent events
actions  promote, abort, ... behind a confirmation and an anti-forgery token
pages    HTML from jinja2 templates
app      the aiohttp application and `canary dashboard` itself
"""
