"""Given a connection to a sandbox database, create Ubertruck's schema and fill it with realistic data.
Rows are generated server-side (INSERT ... SELECT generate_series) so hundreds of MB take seconds, not minutes."""
from __future__ import annotations

from pathlib import Path

import psycopg

TABLES = "core.users fleet.trucks booking.bookings payment.payments tracking.tracking_events admin.audit_log".split()
# "city RTO-state-code lat lon" entries
CITIES = [(c, st, float(a), float(o)) for c, st, a, o in (e.split() for e in """
Mumbai MH 19.0760 72.8777, Pune MH 18.5204 73.8567, Nagpur MH 21.1458 79.0882, Nashik MH 19.9975 73.7898,
Delhi DL 28.7041 77.1025, Gurugram HR 28.4595 77.0266, Bengaluru KA 12.9716 77.5946, Mysuru KA 12.2958 76.6394,
Chennai TN 13.0827 80.2707, Coimbatore TN 11.0168 76.9558, Hyderabad TS 17.3850 78.4867,
Kolkata WB 22.5726 88.3639, Ahmedabad GJ 23.0225 72.5714, Surat GJ 21.1702 72.8311, Jaipur RJ 26.9124 75.7873,
Lucknow UP 26.8467 80.9462, Kanpur UP 26.4499 80.3319, Indore MP 22.7196 75.8577, Bhopal MP 23.2599 77.4126,
Patna BR 25.5941 85.1376, Ludhiana PB 30.9010 75.8573, Kochi KL 9.9312 76.2673,
Thiruvananthapuram KL 8.5241 76.9366, Guwahati AS 26.1445 91.7362, Visakhapatnam AP 17.6868 83.2185,
Bhubaneswar OD 20.2961 85.8245, Raipur CG 21.2514 81.6296, Ranchi JH 23.3441 85.3096,
Chandigarh CH 30.7333 76.7794, Srinagar JK 34.0837 74.7973""".split(","))]
FIRST = ("Aarav Vivaan Aditya Arjun Rohan Rahul Amit Suresh Ramesh Vikram Karan Imran Sanjay Deepak Manoj Priya Ananya "
         "Sneha Pooja Kavya Meera Lakshmi Fatima Neha Divya Harpreet Gurpreet Arun Kiran Sunita").split()
LAST = ("Sharma Verma Patel Shah Reddy Nair Iyer Singh Gupta Kumar Das Banerjee Mukherjee Joshi Kulkarni Deshmukh "
        "Chauhan Yadav Khan Ansari Menon Pillai Rao Naidu Mehta Agarwal Jain Bose Gill Sandhu").split()
STREETS = ("Gandhi Nehru Tilak Station Market Temple Lake Ring MG Link Industrial Canal Fort Mill Old-Highway "
           "Nagar Bazaar Ganesh Shivaji Ambedkar Patel Sarojini").split()
WORDS = ("fragile cement steel pipes furniture textiles grain rice onions electronics machinery tiles fertiliser "
         "cartons paint cables tyres pharma FMCG dock loading unloading gate pass contact supervisor call before "
         "arrival night entry allowed tarpaulin required").split()
EVENTS_PER_TRIP = 16  # mean GPS pings per trip; tuned so tracking_events holds ~60% of the bytes


def _arr(values) -> str:
    return "ARRAY[" + ",".join("'" + str(v).replace("'", "''") + "'" for v in values) + "]"


def _pick(values) -> str:
    return f"({_arr(values)})[1 + floor(random() * {len(values)})::int]"


CITY, STATE = f"({_arr(c[0] for c in CITIES)})", f"({_arr(c[1] for c in CITIES)})"
LAT, LON = f"({_arr(c[2] for c in CITIES)}::float8[])", f"({_arr(c[3] for c in CITIES)}::float8[])"
DRAW_CITY = f"1 + floor(random() * {len(CITIES)})::int"
SIGNUP = "now() - interval '300 days' - random() * interval '60 days'"  # before the first booking
# md5 fragments stop addresses and notes compressing absurdly well; real free text does not either.
ADDR = (f"(1 + floor(random() * 400))::int || ', ' || {_pick(STREETS)} || ' ' || "
        f"{_pick(['Road', 'Marg', 'Nagar', 'Street', 'Lane', 'Chowk', 'Layout'])} || ', Bldg ' || "
        f"upper(substr(md5(random()::text), 1, 5)) || ', ' || {CITY}[{{ci}}] || ' - ' || "
        f"(110000 + floor(random() * 740000))::int")
NOTE = (f"{_pick(WORDS)} || ' ' || {_pick(WORDS)} || ' ' || {_pick(WORDS)} || '; ref ' || "
        f"substr(md5(random()::text), 1, 12) || ' ' || {_pick(WORDS)}")


def apply_schema(conn: psycopg.Connection) -> None:
    """Given a connection as the database owner, create the Ubertruck schema (idempotent) and commit.
    Raise psycopg.Error when the role may not create the pg_trgm extension or the readonly role."""
    conn.execute(Path(__file__).with_name("schema.sql").read_text())
    conn.commit()


def _one(conn: psycopg.Connection, sql: str) -> int:
    return conn.execute(sql).fetchone()[0]


def _top(conn: psycopg.Connection, *tables: str) -> tuple[int, ...]:
    return conn.execute("SELECT " + ", ".join(f"(SELECT coalesce(max(id), 0) FROM {t})" for t in tables)).fetchone()


def _sync_identity(conn: psycopg.Connection) -> None:
    # Rows get explicit ids (so foreign keys can be computed up front): move identity sequences past them.
    conn.execute("SELECT " + ", ".join(f"setval(pg_get_serial_sequence('{t}', 'id'), "
                                       f"(SELECT coalesce(max(id), 0) + 1 FROM {t}), false)" for t in TABLES))


def _bookings(conn: psycopg.Connection, n: int, users: tuple[int, int], trucks: tuple[int, int], recent: bool) -> None:
    """Given id ranges (base, count) of users and trucks, insert n bookings with payments, GPS pings and audit rows."""
    (ub, nu), (tb, nt), base = users, trucks, _top(conn, "booking.bookings")[0]
    # Leads reach 1 day and trips ~4 days, so these offsets keep every timestamp in the past.
    age = "interval '5 days' - random() * interval '2 hours'" if recent else \
        "interval '6 days' + random() * interval '294 days'"
    status = "CASE WHEN r < 0.5 THEN 'delivered' ELSE 'in_transit' END" if recent else \
        ("CASE WHEN r < 0.70 THEN 'delivered' WHEN r < 0.76 THEN 'in_transit' WHEN r < 0.84 THEN 'confirmed' "
         "WHEN r < 0.88 THEN 'requested' ELSE 'cancelled' END")
    # OFFSET 0 fences each level so a random draw is evaluated once per row, not once per reference.
    # Owners sit at every 10th user id, so customers are drawn from the other nine slots.
    conn.execute(f"""
        INSERT INTO booking.bookings (id, customer_id, truck_id, status, pickup_city, pickup_lat, pickup_lon,
            pickup_address, drop_city, drop_lat, drop_lon, drop_address, distance_km, quoted_amount, final_amount,
            notes, created_at, scheduled_at, completed_at)
        SELECT id, cust, truck, status, {CITY}[pc], plat, plon, {ADDR.format(ci='pc')}, {CITY}[dc], dlat, dlon,
            {ADDR.format(ci='dc')}, dist, round((1500 + dist * rate)::numeric, 2),
            CASE WHEN status = 'delivered' THEN round((1500 + dist * rate * (0.95 + random() * 0.1))::numeric, 2) END,
            CASE WHEN random() < 0.6 THEN {NOTE} END, created, created + lead,
            CASE WHEN status = 'delivered' THEN created + lead + dist / 45 * interval '1 hour' END
        FROM (SELECT *, {status} AS status,
                     greatest(5, 1.3 * 111 * sqrt((dlat - plat) ^ 2 + ((dlon - plon) * cos(radians(plat))) ^ 2)) AS dist
              FROM (SELECT {base}::bigint + g AS id, random() AS r, 18 + random() * 30 AS rate,
                           {ub} + 10 * floor(random() * {nu // 10})::bigint + 1 + floor(random() * 9)::int AS cust,
                           {tb} + 1 + floor(random() * {nt})::bigint AS truck, pc, dc,
                           round(({LAT}[pc] + (random() - 0.5) * 0.3)::numeric, 6) AS plat,
                           round(({LON}[pc] + (random() - 0.5) * 0.3)::numeric, 6) AS plon,
                           round(({LAT}[dc] + (random() - 0.5) * 0.3)::numeric, 6) AS dlat,
                           round(({LON}[dc] + (random() - 0.5) * 0.3)::numeric, 6) AS dlon,
                           now() - ({age}) AS created, random() * interval '1 day' AS lead
                    FROM (SELECT g, {DRAW_CITY} AS pc, {DRAW_CITY} AS dc FROM generate_series(1, {n}) g OFFSET 0) c
                    OFFSET 0) a) b""")
    conn.execute(f"""
        INSERT INTO payment.payments (booking_id, amount, method, status, gateway_ref, created_at, settled_at)
        SELECT id, coalesce(final_amount, quoted_amount), {_pick('upi upi upi card netbanking wallet cash'.split())},
               pst, 'pay_' || substr(md5(random()::text), 1, 14), created_at + random() * interval '1 hour',
               CASE WHEN pst IN ('captured', 'refunded')
                    THEN created_at + interval '1 day' + random() * interval '2 days' END
        FROM (SELECT *, CASE WHEN status = 'cancelled' THEN 'refunded' WHEN random() < 0.03 THEN 'failed'
                             WHEN status = 'confirmed' THEN 'pending' ELSE 'captured' END AS pst
              FROM booking.bookings WHERE id > {base} AND status <> 'requested' OFFSET 0) b""")
    conn.execute(f"""
        INSERT INTO tracking.tracking_events (booking_id, lat, lon, speed_kmh, heading, accuracy_m, recorded_at)
        SELECT id, plat + (dlat - plat) * i / ne + (random() - 0.5) * 0.02, plon + (dlon - plon) * i / ne
               + (random() - 0.5) * 0.02, (random() * 85)::real, floor(random() * 360)::smallint,
               (3 + random() * 25)::real, scheduled_at + (fin - scheduled_at) * (i::float8 / ne)
        FROM (SELECT id, pickup_lat::float8 AS plat, pickup_lon::float8 AS plon, drop_lat::float8 AS dlat,
                     drop_lon::float8 AS dlon, scheduled_at, 1 + floor(random() * {2 * EVENTS_PER_TRIP - 1})::int AS ne,
                     coalesce(completed_at, scheduled_at + distance_km / 45 * interval '1 hour') AS fin
              FROM booking.bookings WHERE id > {base} AND status IN ('delivered', 'in_transit') OFFSET 0) b,
             generate_series(1, ne) i""")
    conn.execute(f"""
        INSERT INTO admin.audit_log (actor_id, action, entity, entity_id, details, created_at)
        SELECT customer_id, {_pick('booking.create booking.update booking.cancel payment.retry user.login'.split())},
               'booking', id, jsonb_build_object('booking_number', booking_number, 'status', status,
               'ip', '10.' || floor(random() * 255)::int || '.' || floor(random() * 255)::int || '.'
                     || floor(random() * 255)::int, 'request_id', md5(random()::text),
               'client', {_pick(['android/5.2.1', 'android/5.3.0', 'ios/5.2.0', 'web/2024.11', 'ops-console'])},
               'comment', {NOTE}), created_at + random() * interval '2 days'
        FROM booking.bookings WHERE id > {base} AND random() < 0.7""")


def _batch(conn: psycopg.Connection, n: int) -> None:
    """Given a booking count n, insert n bookings plus the users and trucks they need."""
    nu, nt = 10 * max(1, n // 40), max(1, n // 25)
    ub, tb = _top(conn, "core.users", "fleet.trucks")
    # Phone and registration derive from the id through a bijection, so the unique keys never collide.
    conn.execute(f"""
        INSERT INTO core.users (id, full_name, phone, email, role, city, address, created_at)
        SELECT id, fn || ' ' || ln, '+91' || (6 + id % 4) || lpad(((id * 387420489) % 1000000000)::text, 9, '0'),
               lower(fn || '.' || ln) || id || '@' || {_pick('gmail.com yahoo.co.in rediffmail.com'.split())},
               CASE WHEN g % 10 = 0 THEN 'owner' WHEN g % 1000 = 1 THEN 'admin' ELSE 'customer' END,
               {CITY}[ci], {ADDR.format(ci='ci')}, {SIGNUP}
        FROM (SELECT g, {ub}::bigint + g AS id, {_pick(FIRST)} AS fn, {_pick(LAST)} AS ln, {DRAW_CITY} AS ci
              FROM generate_series(1, {nu}) g OFFSET 0) s""")
    conn.execute(f"""
        INSERT INTO fleet.trucks (id, owner_id, registration_no, truck_type, capacity_kg, make, model_year,
                                  home_city, status, created_at)
        SELECT id, owner, {STATE}[ci] || lpad((10 + x % 90)::text, 2, '0') || chr(65 + ((x / 90) % 26)::int)
                   || chr(65 + ((x / 2340) % 26)::int) || (1000 + (x / 60840) % 9000),
               split_part(tt, ':', 1), split_part(tt, ':', 2)::int,
               {_pick(['Tata', 'Ashok Leyland', 'Eicher', 'BharatBenz', 'Mahindra'])}, 2010 + floor(random() * 15)::int,
               {CITY}[ci], {_pick(['active'] * 18 + ['maintenance', 'inactive'])}, {SIGNUP}
        FROM (SELECT {tb}::bigint + g AS id, (({tb}::bigint + g) * 2147483647) % 547560000 AS x, {DRAW_CITY} AS ci,
                     {ub} + 10 * (1 + floor(random() * {nu // 10}))::bigint AS owner,
                     {_pick('LCV:3500 6-wheeler:9000 10-wheeler:16000 12-wheeler:21000 trailer:32000'.split())} AS tt
              FROM generate_series(1, {nt}) g OFFSET 0) s""")
    _bookings(conn, n, (ub, nu), (tb, nt), recent=False)


def generate(conn: psycopg.Connection, target_mb: int, seed: float = 0.42) -> dict[str, int]:
    """Given a connection to a database with the schema applied, fill it until pg_database_size is about
    target_mb megabytes (+/-20%), return exact row counts per table as {"core.users": n, ...}.
    Raise ValueError when target_mb is not positive or seed is outside [-1, 1]."""
    if target_mb <= 0 or not -1 <= seed <= 1:
        raise ValueError(f"need target_mb > 0 and -1 <= seed <= 1, got {target_mb=}, {seed=}")
    target, size = target_mb * 1024 * 1024, "SELECT pg_database_size(current_database())"
    conn.execute("SELECT setseed(%s)", (seed,))
    # Bytes per booking (every table and index included) differ across server versions, so a pilot
    # batch measures them and the following batches extrapolate.
    per_booking = 1500.0
    for share in (0.15, 0.95, 1.0):
        before = _one(conn, size)
        n = int((target - before) * share / per_booking)
        if target - before < 0.02 * target or n < 40:
            break
        _batch(conn, n)
        conn.commit()
        per_booking = max(200.0, (_one(conn, size) - before) / n)
    _sync_identity(conn)
    conn.execute("ANALYZE")
    conn.commit()
    return {t: _one(conn, f"SELECT count(*) FROM {t}") for t in TABLES}


def add_activity(conn: psycopg.Connection, bookings: int = 100) -> None:
    """Given a connection to a database filled by generate(), insert `bookings` recent bookings with their
    payments, GPS pings and audit rows, then commit.
    Raise ValueError when there are no users or trucks to attach the bookings to."""
    nu, nt = _top(conn, "core.users", "fleet.trucks")
    if nu < 10 or nt < 1:
        raise ValueError("add_activity needs a database filled by generate() first")
    _bookings(conn, bookings, (0, nu - nu % 10), (0, nt), recent=True)
    _sync_identity(conn)
    conn.commit()
