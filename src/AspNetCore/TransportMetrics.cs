using System.Diagnostics.Metrics;
using IoMux.Loop;

namespace IoMux.AspNetCore;

/// <summary>The transport's part in metrics. Kestrel records its own instruments for every transport
/// (<c>kestrel.connection.duration</c>, <c>kestrel.active_connections</c>, … on meter
/// <c>Microsoft.AspNetCore.Server.Kestrel</c>, and <c>http.server.request.duration</c> on
/// <c>Microsoft.AspNetCore.Hosting</c>), so the transport adds no connection instruments of its own: it only puts
/// its loops in the host's <c>IoMux.Loop</c> meter.</summary>
internal static class TransportMetrics
{
    /// <summary>Counts the group's loops in the IoMux.Loop meter of the host's <paramref name="meterFactory"/> (null:
    /// none registered, they stay in the process-wide meter). The loops are running already: until the move, an
    /// iteration may still read the old meter, which only decides where that iteration's lag goes.</summary>
    public static void UseHostMeter(LoopGroup loops, IMeterFactory? meterFactory)
    {
        if (meterFactory is null)
            return;
        for (int i = 0; i < loops.Count; i++)
            LoopMetrics.UseMeterFactory(loops[i].Loop, meterFactory);
    }
}
