# The seed's replayable generator. Changes from the seed, all marked "snapgraph:":
# the driver (SQLite or PostgreSQL instead of hdbcli), the missing `import pickle`,
# no cursor reuse after close, the offset moves by the rows read, and the timer stops
# once the table is exhausted.
import pickle

from db import connect  # snapgraph: the database driver is the one thing that changes

offset = 0
c = None

api.set_initial_snapshot_info(api.InitialProcessInfo(is_stateful=True, outports_info={'output': api.OutportInfo(is_generator=True)}))

# Operator will have batches and it will be Replayable
def prestart():
    conn = connect(api.config.connection)
    global c
    c = conn.cursor()

def time_callback():
    global offset
    # The order by guarantees the same order when replaying
    batch = int(api.config.batch)
    c.execute(f"SELECT * FROM test ORDER BY x LIMIT {batch} OFFSET {offset};")
    test_data = c.fetchall()
    if len(test_data) > 0:
        t = [[entry for entry in row] for row in test_data]
        api.outputs.output.publish(api.Table(t))
        # snapgraph: the seed adds `batch` before looking at the rows, so an empty or short read
        # moves the offset past rows appended later and a resume (savepoint) never reads them.
        offset += len(test_data)
        return 0
    return -1  # snapgraph: the demo table is finite; a streaming source would return 0 and keep polling

api.add_timer(time_callback)

api.set_prestart(prestart)

# Since we assume new entries will go to the end of the table, we can only save the offset
# and not the table.
def serialize(epoch):
    return pickle.dumps(offset)

api.set_serialize_callback(serialize)

def restore(epoch, state_bytes):
    global offset
    offset = pickle.loads(state_bytes)

api.set_restore_callback(restore)
