using Microsoft.Extensions.Logging;

namespace IoMux.AspNetCore;

/// <summary>The transport's log messages. Per-connection events are at Debug, as Kestrel's socket transport logs
/// them (SocketsLog: ConnectionReadFin, ConnectionReset, ConnectionPause, ConnectionResume, ConnectionWriteFin,
/// ConnectionWriteRst), under the category <see cref="ConnectionCategory"/>: switched on with
/// <c>"Logging:LogLevel:IoMux.AspNetCore.Connections": "Debug"</c>. Disabled, each costs an IsEnabled check.</summary>
internal static partial class TransportLog
{
    public const string Category = "IoMux.AspNetCore";
    public const string ConnectionCategory = "IoMux.AspNetCore.Connections";

    [LoggerMessage(1, LogLevel.Debug, "Connection id \"{ConnectionId}\" received FIN.", EventName = "ConnectionReadFin")]
    public static partial void ReadFin(ILogger logger, string connectionId);

    [LoggerMessage(2, LogLevel.Debug, "Connection id \"{ConnectionId}\" reset by the peer (RST).", EventName = "ConnectionReset")]
    public static partial void Reset(ILogger logger, string connectionId);

    [LoggerMessage(3, LogLevel.Debug, "Connection id \"{ConnectionId}\" paused: the application has not read {Bytes} bytes yet.", EventName = "ConnectionPause")]
    public static partial void Pause(ILogger logger, string connectionId, long bytes);

    [LoggerMessage(4, LogLevel.Debug, "Connection id \"{ConnectionId}\" resumed.", EventName = "ConnectionResume")]
    public static partial void Resume(ILogger logger, string connectionId);

    [LoggerMessage(5, LogLevel.Debug, "Connection id \"{ConnectionId}\" sending FIN.", EventName = "ConnectionWriteFin")]
    public static partial void WriteFin(ILogger logger, string connectionId);

    [LoggerMessage(6, LogLevel.Debug, "Connection id \"{ConnectionId}\" sending RST because: \"{Reason}\"", EventName = "ConnectionWriteRst")]
    public static partial void WriteRst(ILogger logger, string connectionId, string reason);

    [LoggerMessage(7, LogLevel.Debug, "Connection id \"{ConnectionId}\" read failed: {Error}.", EventName = "ConnectionError")]
    public static partial void ReadError(ILogger logger, string connectionId, string error);

    [LoggerMessage(20, LogLevel.Warning, "IoMux transport: accept on {EndPoint}: {Error}; not accepting for {Milliseconds} ms at a time until descriptors are free again.", EventName = "AcceptPaused")]
    public static partial void AcceptPaused(ILogger logger, System.Net.EndPoint endPoint, string error, int milliseconds);

    [LoggerMessage(21, LogLevel.Information, "IoMux transport: accepting on {EndPoint} again.", EventName = "AcceptResumed")]
    public static partial void AcceptResumed(ILogger logger, System.Net.EndPoint endPoint);

    [LoggerMessage(22, LogLevel.Error, "IoMux transport: accept on {EndPoint} failed: {Error}.", EventName = "AcceptFailed")]
    public static partial void AcceptFailed(ILogger logger, System.Net.EndPoint endPoint, string error);
}
