# The seed's idempotent writer: UPSERT makes a replayed row overwrite itself.
# Changes from the seed: the driver, UPSERT spelled the SQL-standard way
# (INSERT ... ON CONFLICT), and the cursor is not used after close.
from db import connect, sql

c = None
conn = None

def prestart():
    global c, conn
    conn = connect(api.config.connection)
    c = conn.cursor()

def on_input(msg_id, header, body):
    data = body.get().body

    # Upsert guarantees idempotency
    stmt = sql(conn, 'INSERT INTO target (x, y, z) VALUES (?, ?, ?) '
                     'ON CONFLICT (x) DO UPDATE SET y = excluded.y, z = excluded.z')
    for row in data:
        c.execute(stmt, row)
    conn.commit()

api.set_port_callback("input", on_input)

api.set_prestart(prestart)
