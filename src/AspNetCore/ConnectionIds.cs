namespace IoMux.AspNetCore;

/// <summary>Connection IDs, unique in the process across listeners, factories and restarts of the host, as Kestrel's
/// CorrelationIdGenerator makes them: one process-wide counter seeded from the clock (UTC ticks), so a restarted
/// app does not hand out the IDs of the previous run again, encoded as 13 base-32 characters.</summary>
internal static class ConnectionIds
{
    private const string Digits = "0123456789ABCDEFGHIJKLMNOPQRSTUV";
    private static long _last = DateTime.UtcNow.Ticks;

    public static string Next() => Encode(Interlocked.Increment(ref _last));

    internal static string Encode(long id) => string.Create(13, id, static (chars, value) =>
    {
        for (int i = chars.Length - 1; i >= 0; i--, value >>= 5)
            chars[i] = Digits[(int)(value & 31)];
    });
}
