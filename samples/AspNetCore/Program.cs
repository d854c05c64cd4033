// An ASP.NET Core app on IoMux: one call switches Kestrel's transport to IoMux event loops.
//   dotnet run --project samples/AspNetCore            then: curl http://127.0.0.1:5080/hello
//   dotnet publish samples/AspNetCore -r linux-x64     a Native AOT binary (PublishAot in the project)
using System.Net.WebSockets;
using IoMux.AspNetCore;

var builder = WebApplication.CreateBuilder(args);
builder.WebHost.UseIoMux(options =>
{
    options.ThreadCount = Environment.ProcessorCount;     // one event loop per thread
    options.Scheduling = ApplicationScheduling.ThreadPool; // or Inline, for handlers that never block
});
int port = int.TryParse(builder.Configuration["port"], out var p) ? p : 5080; // --port N
builder.WebHost.ConfigureKestrel(kestrel => kestrel.ListenLocalhost(port));

var app = builder.Build();
app.UseWebSockets();
app.MapGet("/hello", () => "Hello from Kestrel on IoMux");
app.MapPost("/echo", async (HttpContext context) => await context.Request.Body.CopyToAsync(context.Response.Body));
app.Map("/ws", async (HttpContext context) => // a WebSocket that sends back every message it receives
{
    if (!context.WebSockets.IsWebSocketRequest)
    {
        context.Response.StatusCode = StatusCodes.Status400BadRequest;
        return;
    }
    using var socket = await context.WebSockets.AcceptWebSocketAsync();
    var buffer = new byte[16 * 1024];
    while (true)
    {
        var received = await socket.ReceiveAsync(buffer, context.RequestAborted);
        if (received.MessageType == WebSocketMessageType.Close)
        {
            await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, null, context.RequestAborted);
            return;
        }
        await socket.SendAsync(buffer.AsMemory(0, received.Count), received.MessageType, received.EndOfMessage, context.RequestAborted);
    }
});
app.Run();
