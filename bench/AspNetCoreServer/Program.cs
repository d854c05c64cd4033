// The TechEmpower-style app of bench/aspnetcore.sh, on the transport named by the first argument:
//   AspNetCoreServer iomux-inline|iomux-threadpool|sockets|sockets-inline PORT [THREADS]
// GET /plaintext answers "Hello, World!"; GET /json answers {"message":"Hello, World!"}.
using System.Net;
using System.Text.Json.Serialization;
using IoMux.AspNetCore;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;

var transport = args.Length > 0 ? args[0] : "iomux-inline";
int port = args.Length > 1 ? int.Parse(args[1]) : 8080;
int threads = args.Length > 2 ? int.Parse(args[2]) : Environment.ProcessorCount;

var builder = WebApplication.CreateSlimBuilder();
builder.Logging.ClearProviders();
builder.WebHost.ConfigureKestrel(o => o.Listen(IPAddress.Loopback, port));
builder.Services.ConfigureHttpJsonOptions(o => o.SerializerOptions.TypeInfoResolverChain.Insert(0, BenchJson.Default));
switch (transport)
{
    case "iomux-inline":
    case "iomux-threadpool":
        builder.WebHost.UseIoMux(o =>
        {
            o.ThreadCount = threads;
            o.Scheduling = transport == "iomux-inline" ? ApplicationScheduling.Inline : ApplicationScheduling.ThreadPool;
        });
        break;
    case "sockets":
        builder.WebHost.UseSockets(o => o.IOQueueCount = threads);
        break;
    case "sockets-inline":
        builder.WebHost.UseSockets(o =>
        {
            o.IOQueueCount = threads;
            o.UnsafePreferInlineScheduling = true; // Kestrel's own "inline completions" mode
        });
        break;
    default:
        Console.Error.WriteLine($"unknown transport '{transport}'");
        return 2;
}
var app = builder.Build();
var hello = "Hello, World!"u8.ToArray();
app.MapGet("/plaintext", () => Results.Bytes(hello, "text/plain"));
app.MapGet("/json", () => Results.Json(new Message("Hello, World!"), BenchJson.Default.Message));
// With IOMUX_ALLOCATION_SAMPLES=1: the runtime's allocation samples (one per ~100 KB) by type, to find who allocates.
var samples = Environment.GetEnvironmentVariable("IOMUX_ALLOCATION_SAMPLES") == "1" ? new AllocationSampler() : null;
app.MapGet("/allocation-samples", () => Results.Text(samples?.Report() ?? "set IOMUX_ALLOCATION_SAMPLES=1"));
// Bytes allocated by the whole process so far (every thread): the script takes the difference over a run.
app.MapGet("/allocated", () => Results.Text(GC.GetTotalAllocatedBytes(precise: true).ToString()));
Console.WriteLine($"listening on {port} ({transport}, {threads} threads)");
app.Run();
return 0;

internal sealed record Message(string message);

/// <summary>GC AllocationTick events (Microsoft-Windows-DotNETRuntime, keyword GC, verbose) counted by type name.</summary>
internal sealed class AllocationSampler : System.Diagnostics.Tracing.EventListener
{
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, long> _bytes = new();

    protected override void OnEventSourceCreated(System.Diagnostics.Tracing.EventSource source)
    {
        if (source.Name == "Microsoft-Windows-DotNETRuntime")
            EnableEvents(source, System.Diagnostics.Tracing.EventLevel.Verbose, (System.Diagnostics.Tracing.EventKeywords)0x1);
    }

    protected override void OnEventWritten(System.Diagnostics.Tracing.EventWrittenEventArgs e)
    {
        if (e.EventName?.StartsWith("GCAllocationTick", StringComparison.Ordinal) != true || e.Payload is null)
            return;
        int i = e.PayloadNames!.IndexOf("TypeName");
        int a = e.PayloadNames!.IndexOf("AllocationAmount64");
        if (i >= 0)
            _bytes.AddOrUpdate(e.Payload[i]?.ToString() ?? "?", _ => a >= 0 ? Convert.ToInt64(e.Payload[a]) : 1, (_, v) => v + (a >= 0 ? Convert.ToInt64(e.Payload[a]) : 1));
    }

    public string Report() => string.Join("\n", _bytes.OrderByDescending(p => p.Value).Take(25).Select(p => $"{p.Value,12} {p.Key}"));
}

[JsonSerializable(typeof(Message))]
internal sealed partial class BenchJson : JsonSerializerContext;
