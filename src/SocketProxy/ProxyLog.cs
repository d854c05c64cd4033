using Microsoft.Extensions.Logging;
using IoMux.Interop;

namespace IoMux.SocketProxy;

/// <summary>Every message the proxy logs, in one place (so the wording and the levels are reviewed together).</summary>
internal sealed class ProxyLog(ILogger logger)
{

    public void Listening(int count, string target, string backend) =>
        logger.LogInformation("Relaying {Count} listening socket(s) to {Target} ({Backend} backend).", count, target, backend);

    /// <summary>At error priority, as systemd-socket-proxyd's "Failed to connect to remote host: %m" (ProxyServer.OnBackendUnreachable).</summary>
    public void BackendUnreachable(string target, int errno, string? detail) =>
        logger.LogError("Failed to connect to {Target}: {Error}; client closed.",
            target, detail ?? $"{Errno.Name(errno)} ({Errno.Describe(errno)})");

    public void BackendFailuresSuppressed(string target, long suppressed, int perSecond) =>
        logger.LogError("Failed to connect to {Target}: {Suppressed} more failure(s) in the last second not logged (suppressed past {PerSecond} lines a second).",
            target, suppressed, perSecond);

    public void BackendReachable(string target, long failures) =>
        logger.LogInformation("{Target} answers again after {Failures} failed connection(s).", target, failures);

    public void ConnectionAborted(long id, string side, int errno) =>
        logger.LogDebug("Connection {Id}: {Side} failed with {Error}; both sides closed.", id, side, Errno.Name(errno));

    public void AcceptPaused(int errno, TimeSpan retry) =>
        logger.LogWarning("Out of descriptors ({Error}): not accepting for {Delay} ms at a time until a connection can be relayed again (logged once).",
            Errno.Name(errno), (int)retry.TotalMilliseconds);

    /// <summary>systemd-socket-proxyd's line and priority (warning in systemd 252, whatever its issue tracker says).</summary>
    public void ConnectionLimit() =>
        logger.LogWarning("Hit connection limit, refusing connection.");

    public void AcceptFailed(int errno) =>
        logger.LogError("accept: {Error} ({Description}).", Errno.Name(errno), Errno.Describe(errno));

    public void IdleExit(TimeSpan idle) =>
        logger.LogInformation("No connection for {Seconds} s; exiting.", idle.TotalSeconds);

    public void Draining(int active, TimeSpan limit) =>
        logger.LogInformation("Stopping: no new connections; waiting up to {Seconds} s for {Active} active connection(s).",
            limit.TotalSeconds, active);

    public void DrainTimedOut(int active) =>
        logger.LogWarning("Stopping: closing {Active} connection(s) still active after the drain time.", active);

    public void Totals(ProxyCounters c) =>
        logger.LogInformation("Relayed {Closed} connection(s): {ToBackend} bytes to the backend, {ToClients} bytes to clients; {Failures} backend connect failure(s).",
            c.Closed, c.BytesToBackend, c.BytesToClients, c.BackendFailures);
}
