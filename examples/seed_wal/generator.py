# The seed's batch generator. Changes from the seed, all marked "snapgraph:": the
# driver, no cursor reuse after close, and the timer stops once the table is exhausted.
import pickle

from db import connect  # snapgraph: the database driver is the one thing that changes

offset = 0
ID = 0
c = None
# Table is broken into messages of 100 rows, and each made of 10 batches fo 10 rows
batch_size = 10
message_size = 100

api.set_initial_snapshot_info(api.InitialProcessInfo(is_stateful=True, outports_info={'output': api.OutportInfo(is_generator=True)}))

def prestart():
    conn = connect(api.config.connection)
    global c
    c = conn.cursor()

final = False
def time_callback():
    global offset, ID
    # The order by guarantees the same order when replaying
    c.execute(f"SELECT * FROM test ORDER BY x LIMIT {batch_size} OFFSET {offset};")
    test_data = c.fetchall()
    global final
    if len(test_data) > 0 and not final:
        api.logger.debug('sending')
        t = [[entry for entry in row] for row in test_data]
        h = {}
        if len(test_data) < batch_size:
            h['isFinal'] = [True]
            final = True
        else:
            h['isFinal'] = [False]
        h['batchNum'] = [offset // batch_size]
        h['messageNum'] = [offset // message_size ]

        # The last batch has the flag set to true, this is important so the writer operator can clean up the WAL
        if (offset + batch_size) % message_size == 0 and offset > 1:
            h['isFinal'] = [True]

        h['ID'] = [ID]
        api.outputs.output.publish(api.Table(t), h)
        ID += 1
        offset += batch_size
        return 0
    return -1  # snapgraph: the demo table is finite; a streaming source would return 0 and keep polling

api.add_timer(time_callback)

api.set_prestart(prestart)

# Since we assume new entries will go to the end of the table, we can only save the offset
# and not the table.
def serialize(epoch):
    return pickle.dumps([offset, ID])

api.set_serialize_callback(serialize)

def restore(epoch, state_bytes):
    global offset, ID
    offset, ID = pickle.loads(state_bytes)

api.set_restore_callback(restore)
